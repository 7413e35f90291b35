//! Reciprocal Rank Fusion (Cormack et al. 2009): each list contributes
//! `1 / (k + rank)` for every passage it ranks (rank from 1), passages are
//! identified by id, and the fused list is sorted by the summed score. It
//! needs no score calibration across engines, which is why hybrid search
//! uses it: BM25 scores and cosine similarities are not comparable.

use crate::hit::Hit;
use std::collections::HashMap;

/// The constant of the original paper and of Elasticsearch's `rrf` retriever.
pub const DEFAULT_K: f32 = 60.0;

/// Fuses ranked lists into one of at most `top` hits. A passage found by
/// several lists keeps the data of the first list that has it.
pub fn rrf(lists: Vec<Vec<Hit>>, k: f32, top: usize) -> Vec<Hit> {
    let mut fused: Vec<Hit> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for list in lists {
        for (rank, mut hit) in list.into_iter().enumerate() {
            let contribution = 1.0 / (k + rank as f32 + 1.0);
            match index.get(&hit.id) {
                Some(&i) => fused[i].score += contribution,
                None => {
                    index.insert(hit.id.clone(), fused.len());
                    hit.score = contribution;
                    fused.push(hit);
                }
            }
        }
    }
    // Stable sort: ties keep first-seen order, so the result is deterministic.
    fused.sort_by(|a, b| b.score.total_cmp(&a.score));
    fused.truncate(top);
    fused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(ids: &[&str]) -> Vec<Hit> {
        ids.iter()
            .map(|id| Hit {
                id: id.to_string(),
                text: format!("text of {id}"),
                title: None,
                url: None,
                score: 9.0,
                metadata: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn passages_found_by_both_lists_rise() {
        let fused = rrf(vec![hits(&["a", "b", "c"]), hits(&["c", "d", "b"])], DEFAULT_K, 10);
        let ids: Vec<_> = fused.iter().map(|h| h.id.as_str()).collect();
        // b: 1/62 + 1/63, c: 1/63 + 1/61 (c wins), a: 1/61, d: 1/62.
        assert_eq!(ids, ["c", "b", "a", "d"]);
        assert!((fused[0].score - (1.0 / 63.0 + 1.0 / 61.0)).abs() < 1e-6);
    }

    #[test]
    fn one_list_keeps_its_order_and_top_truncates() {
        let fused = rrf(vec![hits(&["x", "y", "z"]), Vec::new()], DEFAULT_K, 2);
        let ids: Vec<_> = fused.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["x", "y"]);
    }

    #[test]
    fn duplicates_are_merged_by_id() {
        let fused = rrf(vec![hits(&["a"]), hits(&["a"]), hits(&["a"])], DEFAULT_K, 10);
        assert_eq!(fused.len(), 1);
        assert!((fused[0].score - 3.0 / 61.0).abs() < 1e-6);
    }
}
