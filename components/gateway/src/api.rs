//! Request parsing and validation, and the JSON error body
//! `{"error": {"code", "message"}}` used for every failure before a stream starts.

use crate::bindings::{Message, Role};
use crate::input_limits::*;
use futures::StreamExt;
use serde::Deserialize;
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{BoxBody, Request, Response, box_body};
use spindle_wire::headers;

/// A validated question.
#[derive(Debug)]
pub struct ChatRequest {
    pub query: String,
    pub history: Vec<Message>,
    pub top_k: u32,
    pub filters: Vec<(String, String)>,
    pub request_id: String,
    /// The app's revision, from the host's [`headers::REVISION`].
    pub revision: Option<String>,
}

/// Who asks, from the request head: its id and the revision of the app
/// the host routed it to.
pub struct Caller {
    pub request_id: String,
    pub revision: Option<String>,
}

impl Caller {
    pub fn of(req: &Request) -> Caller {
        let revision = req
            .headers()
            .get(headers::REVISION)
            .and_then(|v| v.to_str().ok())
            // The host's revisions are 12 hex digits; anything else (a client's
            // header under a host that sets none) is not one.
            .filter(|v| v.len() == 12 && v.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_string);
        Caller { request_id: request_id(req), revision }
    }
}

/// A failure to report as an HTTP status with a JSON body.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status: 400, code, message: message.into() }
    }

    pub fn into_response(self) -> Response<BoxBody> {
        error(self.status, self.code, &self.message)
    }
}

pub fn json(status: u16, value: &serde_json::Value) -> Response<BoxBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(box_body(value.to_string()))
        .expect("static headers are valid")
}

pub fn error(status: u16, code: &str, message: &str) -> Response<BoxBody> {
    json(status, &serde_json::json!({"error": {"code": code, "message": message}}))
}

/// The body of `POST /api/chat/stream`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatBody {
    /// The question: 1 to 2000 characters after trimming.
    #[schema(required = true, value_type = String, min_length = 1, max_length = 2000, pattern = r"\S")]
    query: Option<String>,
    /// Earlier turns, oldest first: at most 20 of at most 8000 characters.
    #[serde(default)]
    #[schema(max_items = 20)]
    history: Vec<HistoryMessage>,
    /// Number of sources, 1 to 20 (default 5).
    #[schema(minimum = 1, maximum = 20)]
    top_k: Option<i64>,
    /// Equality filters on passage metadata (e.g. `{"lang": "en"}`), at most 8.
    #[serde(default)]
    filters: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryMessage {
    /// `user`, `assistant` or `system`.
    #[schema(pattern = "^(user|assistant|system)$")]
    role: String,
    #[schema(max_length = 8000)]
    content: String,
}

/// Parses `GET ?query=&top_k=` or a `POST` JSON body.
/// The request's id: the `X-Request-Id` the host set or the client sent,
/// or a new one (under runtimes that set none).
pub fn request_id(req: &Request) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(new_request_id)
}

pub async fn parse(req: Request) -> Result<ChatRequest, ApiError> {
    let caller = Caller::of(&req);
    let (query, history, top_k, filters) = if req.method() == spin_sdk::http::Method::GET {
        let params = query_params(req.uri().query().unwrap_or(""));
        let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let top_k =
            match get("top_k") {
                None => None,
                Some(v) => Some(v.parse::<i64>().map_err(|_| {
                    ApiError::bad_request("invalid_top_k", format!("top_k must be an integer, got `{v}`"))
                })?),
            };
        (get("query"), Vec::new(), top_k, Vec::new())
    } else {
        let ctype = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ctype.starts_with("application/json") {
            return Err(ApiError {
                status: 415,
                code: "unsupported_media_type",
                message: "send the question as application/json".into(),
            });
        }
        let body = read_body(req).await?;
        let body: ChatBody = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid JSON body: {e}")))?;
        let history = body
            .history
            .into_iter()
            .map(|m| {
                let role = match m.role.as_str() {
                    "user" => Role::User,
                    "assistant" => Role::Assistant,
                    "system" => Role::System,
                    other => {
                        return Err(ApiError::bad_request(
                            "invalid_history",
                            format!("unknown role `{other}` in history"),
                        ));
                    }
                };
                Ok(Message { role, content: m.content })
            })
            .collect::<Result<Vec<_>, _>>()?;
        (body.query, history, body.top_k, body.filters.into_iter().collect())
    };
    validate(query, history, top_k, filters, caller)
}

pub fn validate(
    query: Option<String>,
    history: Vec<Message>,
    top_k: Option<i64>,
    filters: Vec<(String, String)>,
    caller: Caller,
) -> Result<ChatRequest, ApiError> {
    let query = query.map(|q| q.trim().to_string()).unwrap_or_default();
    if query.is_empty() {
        return Err(ApiError::bad_request("missing_query", "the `query` parameter is required and must not be empty"));
    }
    let chars = query.chars().count();
    if chars > MAX_QUERY_CHARS {
        return Err(ApiError::bad_request(
            "query_too_long",
            format!("query has {chars} characters; the limit is {MAX_QUERY_CHARS}"),
        ));
    }
    let top_k = top_k.unwrap_or(DEFAULT_TOP_K as i64);
    if !(1..=MAX_TOP_K as i64).contains(&top_k) {
        return Err(ApiError::bad_request(
            "invalid_top_k",
            format!("top_k must be between 1 and {MAX_TOP_K}, got {top_k}"),
        ));
    }
    if history.len() > MAX_HISTORY_MESSAGES {
        return Err(ApiError::bad_request(
            "invalid_history",
            format!("at most {MAX_HISTORY_MESSAGES} history messages"),
        ));
    }
    if history.iter().any(|m| m.content.chars().count() > MAX_HISTORY_CHARS) {
        return Err(ApiError::bad_request(
            "invalid_history",
            format!("history messages are limited to {MAX_HISTORY_CHARS} characters"),
        ));
    }
    if filters.len() > MAX_FILTERS {
        return Err(ApiError::bad_request("invalid_filters", format!("at most {MAX_FILTERS} filters")));
    }
    let Caller { request_id, revision } = caller;
    Ok(ChatRequest { query, history, top_k: top_k as u32, filters, request_id, revision })
}

pub async fn read_body(req: Request) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError {
        status: 413,
        code: "body_too_large",
        message: format!("request body is larger than {MAX_BODY_BYTES} bytes"),
    };
    if let Some(len) =
        req.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok())
        && len > MAX_BODY_BYTES
    {
        return Err(too_large());
    }
    let mut stream = req.into_body().stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request("invalid_body", format!("could not read the request body: {e:?}")))?;
        if buf.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Decodes `application/x-www-form-urlencoded` pairs (`+` is a space).
fn query_params(raw: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn new_request_id() -> String {
    format!("{:016x}", spin_sdk::wasip3::random::random::get_random_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_form_encoding() {
        assert_eq!(
            query_params("query=a+b%20c&top_k=3&x"),
            vec![("query".into(), "a b c".into()), ("top_k".into(), "3".into()), ("x".into(), "".into())]
        );
        assert_eq!(query_params("q=%E4%BD%A0%zz%"), vec![("q".into(), "你%zz%".into())]);
    }
}
