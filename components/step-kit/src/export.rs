//! The WIT glue of the remote retrievers and rerankers, written once: each
//! of those components is a search or scoring function plus one of these
//! macros, which generate the bindings, validate the request, convert
//! between [`Hit`](crate::hit::Hit) and the WIT `passage`, and map
//! [`Failure`](crate::hit::Failure) to `step-error`.

use crate::hit::{Failure, Hit};

/// Largest `top-k` a retriever serves (the gateway asks for at most 50).
pub const MAX_TOP_K: u32 = 100;

/// A validated retrieval request.
pub struct Request {
    pub text: String,
    pub top_k: u32,
    pub filters: Vec<(String, String)>,
    /// The inbound request's id, for outbound calls made for it.
    pub request_id: String,
}

impl Request {
    pub fn new(text: String, top_k: u32, filters: Vec<(String, String)>, request_id: String) -> Result<Self, Failure> {
        if text.trim().is_empty() {
            return Err(Failure::InvalidInput("empty query".into()));
        }
        if top_k == 0 || top_k > MAX_TOP_K {
            return Err(Failure::InvalidInput(format!("top-k must be 1..={MAX_TOP_K}, got {top_k}")));
        }
        Ok(Request { text, top_k, filters, request_id })
    }
}

/// What a retriever found, and the sources that failed along the way.
pub struct Found {
    pub hits: Vec<Hit>,
    pub degraded: Vec<String>,
}

/// Orders candidates by `scores` (higher first), keeping `top_n`: returns
/// (candidate index, score) pairs.
pub fn order(scores: &[f32], top_n: u32) -> Vec<(usize, f32)> {
    let mut order: Vec<(usize, f32)> = scores.iter().copied().enumerate().collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1));
    order.truncate(top_n as usize);
    order
}

/// Maps a [`Failure`] to the `step-error` of the calling component's
/// bindings (each component has its own generated type).
#[doc(hidden)]
#[macro_export]
macro_rules! __step_error {
    ($failure:expr) => {{
        use bindings::spindle::types::types::StepError;
        use $crate::hit::Failure;
        match $failure {
            Failure::InvalidInput(m) => StepError::InvalidInput(m),
            Failure::Unavailable(m) => StepError::Unavailable(m),
            Failure::Timeout(m) => StepError::Timeout(m),
            Failure::Internal(m) => StepError::Internal(m),
        }
    }};
}

/// Exports `spindle:retriever` from `async fn(Request) -> Result<Found, Failure>`.
#[macro_export]
macro_rules! export_retriever {
    ($ty:ident, $search:path) => {
        mod bindings {
            ::spin_sdk::wit_bindgen::generate!({
                world: "spindle:retriever/retriever-step",
                path: ["../../wit/types", "../../wit/retriever"],
                runtime_path: "::spin_sdk::wit_bindgen::rt",
                generate_all,
            });
        }

        struct $ty;

        impl bindings::exports::spindle::retriever::retriever::Guest for $ty {
            async fn retrieve(
                q: bindings::spindle::types::types::Query,
            ) -> Result<bindings::exports::spindle::retriever::retriever::Retrieval, bindings::spindle::types::types::StepError>
            {
                $crate::step::exit_after_returning();
                use bindings::spindle::types::types::Passage;
                let to_step = |f: $crate::hit::Failure| $crate::__step_error!(f);
                let request = $crate::export::Request::new(q.text, q.top_k, q.filters, q.request_id).map_err(to_step)?;
                let found = $search(request).await.map_err(to_step)?;
                let passages = found
                    .hits
                    .into_iter()
                    .map(|h| Passage {
                        id: h.id,
                        text: h.text,
                        title: h.title,
                        url: h.url,
                        score: h.score,
                        metadata: h.metadata,
                    })
                    .collect();
                Ok(bindings::exports::spindle::retriever::retriever::Retrieval { passages, degraded: found.degraded })
            }
        }

        bindings::export!($ty with_types_in bindings);
    };
}

/// Exports `spindle:reranker` from
/// `async fn(query: &str, texts: &[&str], prior: &[f32], request_id: &str) -> Result<Vec<f32>, Failure>`,
/// which scores every candidate (`prior` is each candidate's incoming score;
/// `request_id` goes on outbound calls, see `spindle-clients`' `for_request`).
#[macro_export]
macro_rules! export_reranker {
    ($ty:ident, $score:path) => {
        mod bindings {
            ::spin_sdk::wit_bindgen::generate!({
                world: "spindle:reranker/reranker-step",
                path: ["../../wit/types", "../../wit/reranker"],
                runtime_path: "::spin_sdk::wit_bindgen::rt",
                generate_all,
            });
        }

        struct $ty;

        impl bindings::exports::spindle::reranker::reranker::Guest for $ty {
            async fn rerank(
                query: String,
                passages: Vec<bindings::spindle::types::types::Passage>,
                top_n: u32,
                request_id: String,
            ) -> Result<Vec<bindings::spindle::types::types::Passage>, bindings::spindle::types::types::StepError> {
                $crate::step::exit_after_returning();
                if passages.is_empty() || top_n == 0 {
                    return Ok(Vec::new());
                }
                let scores = {
                    let texts: Vec<&str> = passages.iter().map(|p| p.text.as_str()).collect();
                    let prior: Vec<f32> = passages.iter().map(|p| p.score).collect();
                    $score(&query, &texts, &prior, &request_id).await.map_err(|f| $crate::__step_error!(f))?
                };
                let mut slots: Vec<Option<_>> = passages.into_iter().map(Some).collect();
                Ok($crate::export::order(&scores, top_n)
                    .into_iter()
                    .filter_map(|(i, score)| {
                        slots[i].take().map(|mut p| {
                            p.score = score;
                            p
                        })
                    })
                    .collect())
            }
        }

        bindings::export!($ty with_types_in bindings);
    };
}
