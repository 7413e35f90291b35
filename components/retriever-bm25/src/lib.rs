//! `retriever-bm25`: the embedded default retriever. A BM25 inverted index
//! in the component's own memory image: the bundled corpus (built by
//! `build.rs`), or the documents `spindle index --embedded` wrote into a
//! copy of this component (see [`SLOT`]).

use spindle_step::export::{Found, Request};
use spindle_text::bm25::search;
use spindle_text::hit::{Failure, Hit};
use spindle_text::packed::{PackedIndex, Slot};

static BUNDLED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/index.bin"));

/// Empty as built. `spindle index --embedded` finds it by its magic in the
/// data segment, adds the index to the linear memory's initial image (above
/// the memory as linked, where the allocator never reaches: it grows memory
/// for more) and writes the index's address and length here.
#[used]
static SLOT: Slot = Slot::EMPTY;

fn index() -> Result<PackedIndex<'static>, Failure> {
    // Volatile: as compiled, SLOT says "empty"; the patched bytes must be read.
    let slot = unsafe { std::ptr::read_volatile(&raw const SLOT) };
    let bytes = if slot.len == 0 {
        BUNDLED
    } else {
        // SAFETY: the patcher placed `len` bytes at `offset` in an active data
        // segment inside the memory's initial size, which only grows; nothing
        // writes there (it lies above the heap the allocator was linked with).
        unsafe { std::slice::from_raw_parts(slot.offset as usize as *const u8, slot.len as usize) }
    };
    PackedIndex::open(bytes).map_err(|e| Failure::Internal(format!("embedded index: {e}")))
}

async fn retrieve(q: Request) -> Result<Found, Failure> {
    let index = index()?;
    let hits = search(&index, &q.text, q.top_k as usize, |d| index.matches(d, &q.filters));
    let hits = hits
        .into_iter()
        .map(|hit| {
            let doc = index.doc(hit.doc).map_err(|e| Failure::Internal(format!("embedded index: {e}")))?;
            Ok(Hit {
                id: doc.id.to_string(),
                text: doc.text.to_string(),
                title: doc.title.map(str::to_string),
                url: doc.url.map(str::to_string),
                score: hit.score,
                metadata: doc.metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            })
        })
        .collect::<Result<_, Failure>>()?;
    Ok(Found { hits, degraded: Vec::new() })
}

spindle_step::export_retriever!(Bm25, retrieve);
