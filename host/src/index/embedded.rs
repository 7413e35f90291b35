//! `spindle index --embedded`: a copy of the built `retriever-bm25` that
//! serves other documents, made without a Rust toolchain.
//!
//! The index ([`spindle_text::packed`]) becomes one more active data segment
//! of the component's core module, placed at the end of its linear memory as
//! linked, and the memory's initial size grows by the index's pages. The
//! allocator never hands that range out: its first region ends at the
//! link-time `__heap_end` and it gets more by `memory.grow`, which starts
//! above the new initial size. The module's [`Slot`] (found by its magic)
//! gets the index's address and length. Being part of the memory image,
//! the index is mapped copy-on-write into every instance, not copied.
//!
//! Sections other than the module's memory, data count and data are copied
//! byte for byte.

use anyhow::{Context, bail};
use spindle_text::bm25::Index;
use spindle_text::chunk::Chunk;
use spindle_text::corpus::Document;
use spindle_text::packed::{SLOT_MAGIC, Slot};
use std::path::Path;
use std::time::Instant;
use wasm_encoder::{ComponentSectionId, ConstExpr, DataSection, MemorySection, MemoryType, RawSection};
use wasmparser::{DataKind, Operator, Parser, Payload};

const PAGE: u64 = 65536;

/// Writes a copy of the component at `from` serving `chunks` to `out`
/// (through a temporary file, so a server reloading it never reads half of
/// it; left alone when its bytes would not change). Returns the summary line.
pub fn write(from: &Path, out: &Path, chunks: &[&Chunk]) -> anyhow::Result<String> {
    let started = Instant::now();
    let base = std::fs::read(from).with_context(|| format!("cannot read the embedded retriever {}", from.display()))?;
    let docs = chunks
        .iter()
        .map(|c| Document {
            id: c.id.clone(),
            title: c.title.clone(),
            text: c.text.clone(),
            url: c.url.clone(),
            metadata: c.metadata.iter().cloned().collect(),
        })
        .collect();
    let index = Index::build(docs).to_packed()?;
    let wasm = with_index(&base, &index).with_context(|| format!("{}", from.display()))?;
    let same = std::fs::read(out).is_ok_and(|old| old == wasm);
    if !same {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = out.with_extension("wasm.tmp");
        std::fs::write(&tmp, &wasm)?;
        std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    }
    let mb = |n: usize| n as f64 / 1e6;
    Ok(format!(
        "  embedded {}: {} chunks, index {:.1} MB, component {:.1} MB, {:.1} s{}",
        out.display(),
        chunks.len(),
        mb(index.len()),
        mb(wasm.len()),
        started.elapsed().as_secs_f64(),
        if same { " (unchanged)" } else { "" }
    ))
}

/// `component` (a built `retriever-bm25`) with `index` as its index.
pub fn with_index(component: &[u8], index: &[u8]) -> anyhow::Result<Vec<u8>> {
    if !Parser::is_component(component) {
        bail!("not a wasm component");
    }
    let mut out = wasm_encoder::Component::new();
    let mut depth = 0usize;
    let mut patched = 0;
    for payload in Parser::new(0).parse_all(component) {
        let payload = payload?;
        match &payload {
            Payload::ModuleSection { unchecked_range, .. } => {
                if depth == 0 {
                    let module = slice(component, unchecked_range)?;
                    let bytes = if memchr::memmem::find(module, &SLOT_MAGIC).is_some() {
                        patched += 1;
                        with_segment(module, index)?
                    } else {
                        module.to_vec()
                    };
                    out.section(&RawSection { id: ComponentSectionId::CoreModule as u8, data: &bytes });
                }
                depth += 1;
            }
            Payload::ComponentSection { .. } => {
                if depth == 0 {
                    copy(&mut out, component, &payload)?;
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            _ if depth == 0 => copy(&mut out, component, &payload)?,
            _ => {}
        }
    }
    match patched {
        1 => Ok(out.finish()),
        0 => bail!("this component has no index slot: give the built retriever-bm25"),
        _ => bail!("more than one module of this component has an index slot"),
    }
}

fn slice<'a>(bytes: &'a [u8], range: &std::ops::Range<u64>) -> anyhow::Result<&'a [u8]> {
    bytes.get(range.start as usize..range.end as usize).context("a section runs past the end of the file")
}

fn copy(out: &mut wasm_encoder::Component, bytes: &[u8], payload: &Payload) -> anyhow::Result<()> {
    if let Some((id, range)) = payload.as_section() {
        out.section(&RawSection { id, data: slice(bytes, &range)? });
    }
    Ok(())
}

/// `module` with `index` in a new data segment above its initial memory and
/// its slot pointing there.
fn with_segment(module: &[u8], index: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = wasm_encoder::Module::new();
    let mut at: Option<u64> = None;
    let mut slots = 0;
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload?;
        match payload {
            Payload::MemorySection(reader) => {
                let memories = reader.into_iter().collect::<Result<Vec<_>, _>>()?;
                let [memory] = memories.as_slice() else { bail!("expected one linear memory") };
                if memory.memory64 || memory.shared || memory.page_size_log2.is_some() {
                    bail!("the memory is not a plain 32-bit memory");
                }
                let start = memory.initial * PAGE;
                let pages = memory.initial + (index.len() as u64).div_ceil(PAGE);
                if pages > 65536 || memory.maximum.is_some_and(|max| pages > max) {
                    bail!("an index of {} MiB does not fit in this component's memory", index.len() >> 20);
                }
                let mut section = MemorySection::new();
                section.memory(MemoryType { minimum: pages, ..to_encoder(memory) });
                out.section(&section);
                at = Some(start);
            }
            Payload::DataCountSection { count, .. } => {
                out.section(&wasm_encoder::DataCountSection { count: count + 1 });
            }
            Payload::DataSection(reader) => {
                let at = at.context("the module has no memory of its own")?;
                let mut section = DataSection::new();
                for segment in reader {
                    let segment = segment?;
                    match segment.kind {
                        DataKind::Active { memory_index, offset_expr } => {
                            let mut ops = offset_expr.get_operators_reader();
                            let Operator::I32Const { value } = ops.read()? else {
                                bail!("a data segment has a computed offset");
                            };
                            let mut data = segment.data.to_vec();
                            if let Some(pos) = memchr::memmem::find(&data, &SLOT_MAGIC) {
                                slots += 1;
                                let offset = u32::try_from(at).context("memory over 4 GiB")?;
                                data[pos + Slot::OFFSET_AT..pos + Slot::OFFSET_AT + 4]
                                    .copy_from_slice(&offset.to_le_bytes());
                                let len = &mut data[pos + Slot::LEN_AT..pos + Slot::LEN_AT + 4];
                                if len != [0; 4] {
                                    bail!("this component already holds an index: give the built retriever-bm25");
                                }
                                len.copy_from_slice(&(index.len() as u32).to_le_bytes());
                            }
                            section.active(memory_index, &ConstExpr::i32_const(value), data);
                        }
                        DataKind::Passive => {
                            section.passive(segment.data.iter().copied());
                        }
                    }
                }
                section.active(0, &ConstExpr::i32_const(at as u32 as i32), index.iter().copied());
                out.section(&section);
            }
            Payload::CodeSectionEntry(_) | Payload::End(_) | Payload::Version { .. } => {}
            other => {
                if let Some((id, range)) = other.as_section() {
                    out.section(&RawSection { id, data: slice(module, &range)? });
                }
            }
        }
    }
    if slots != 1 {
        bail!("expected one index slot in the module's data, found {slots}");
    }
    Ok(out.finish())
}

fn to_encoder(memory: &wasmparser::MemoryType) -> MemoryType {
    MemoryType {
        minimum: memory.initial,
        maximum: memory.maximum,
        memory64: memory.memory64,
        shared: memory.shared,
        page_size_log2: memory.page_size_log2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_text::bm25::Index;
    use spindle_text::corpus::Document;

    #[test]
    fn components_without_a_slot_are_refused() {
        let err = with_index(b"\0asm\x01\0\0\0", b"x").unwrap_err().to_string();
        assert!(err.contains("not a wasm component"), "{err}");
        // A component whose module has no slot (the gateway stands in).
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/wasm32-wasip2/release/reranker_none.wasm");
        if let Ok(bytes) = std::fs::read(path) {
            let err = with_index(&bytes, b"x").unwrap_err().to_string();
            assert!(err.contains("no index slot"), "{err}");
        }
    }

    #[test]
    fn the_patched_component_keeps_its_sections_and_validates() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/wasm32-wasip2/release/retriever_bm25.wasm");
        let Ok(bytes) = std::fs::read(path) else {
            eprintln!("skipped: {path} not built");
            return;
        };
        let doc =
            Document { id: "a".into(), title: None, text: "hello".into(), url: None, metadata: Default::default() };
        let index = Index::build(vec![doc]).to_packed().unwrap();
        let patched = with_index(&bytes, &index).unwrap();
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all()).validate_all(&patched).unwrap();
        let err = with_index(&patched, &index).unwrap_err().to_string();
        assert!(err.contains("already holds an index"), "{err}");
    }
}
