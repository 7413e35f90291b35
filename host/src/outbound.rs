//! Outbound HTTP for components: the `allowed_outbound_hosts` allow-list
//! (deny by default) and one pooled keep-alive client shared by every
//! instance, where wasmtime's default sender opens a connection per request.

use crate::cancel::{CancellableBody, Registry};
use crate::metrics::Metrics;
use anyhow::{Context, bail};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// How long a TCP connect may take when the component sets no timeout.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer of each outbound connection, in bytes; also the largest
/// response head an upstream may send.
const OUTBOUND_READ_BUFFER: usize = 8192;

/// Idle pooled connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// One `allowed_outbound_hosts` entry: `scheme://host[:port]`, where scheme,
/// host and port may be `*` and host may be `*.domain`.
#[derive(Debug, Clone, PartialEq)]
struct Rule {
    scheme: Option<String>,
    host: HostPattern,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Any,
    Suffix(String),
    Exact(String),
}

/// The hosts a component may call.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    rules: Vec<Rule>,
}

impl AllowList {
    /// Parses resolved entries; empty ones (an unset variable) are skipped,
    /// as in Spin, so an optional endpoint stays denied.
    pub fn parse(entries: &[String]) -> anyhow::Result<Self> {
        let mut rules = Vec::new();
        for entry in entries {
            let e = entry.trim();
            if e.is_empty() || e == "http://" || e == "https://" {
                continue;
            }
            rules.push(parse_rule(e).with_context(|| format!("allowed_outbound_hosts entry {entry:?}"))?);
        }
        Ok(AllowList { rules })
    }

    /// Whether a request to `uri` is allowed. A wildcard host never covers
    /// loopback, private or link-local IP literals: those must be listed.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let port = uri.port_u16().or(match scheme {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        });
        self.rules.iter().any(|r| {
            r.scheme.as_deref().is_none_or(|s| s == scheme)
                && r.port.is_none_or(|p| Some(p) == port)
                && match &r.host {
                    HostPattern::Exact(h) => *h == host,
                    HostPattern::Suffix(s) => host.ends_with(s.as_str()) && !is_internal_ip(&host),
                    HostPattern::Any => !is_internal_ip(&host),
                }
        })
    }
}

fn is_internal_ip(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback()
                || ip.is_unspecified()
                || (ip.segments()[0] & 0xfe00) == 0xfc00
                || (ip.segments()[0] & 0xffc0) == 0xfe80
        }
        Err(_) => host == "localhost",
    }
}

fn parse_rule(entry: &str) -> anyhow::Result<Rule> {
    let Some((scheme, rest)) = entry.split_once("://") else { bail!("must look like scheme://host[:port]") };
    let scheme = match scheme {
        "*" => None,
        s if s.chars().all(|c| c.is_ascii_alphabetic()) => Some(s.to_ascii_lowercase()),
        _ => bail!("invalid scheme {scheme:?}"),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        bail!("must not include a path (use scheme://host:port)");
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => (h, Some(p)),
        _ => (rest, None),
    };
    let port = match port {
        Some("*") => None,
        Some(p) => Some(p.parse::<u16>().with_context(|| format!("invalid port {p:?}"))?),
        None => match scheme.as_deref() {
            Some("http") => Some(80),
            Some("https") => Some(443),
            _ => bail!("give a port for scheme {:?}", scheme.as_deref().unwrap_or("*")),
        },
    };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let host = match host.as_str() {
        "*" => HostPattern::Any,
        h if h.starts_with("*.") => HostPattern::Suffix(h[1..].to_string()),
        h if h.contains('*') => bail!("wildcards are allowed only as a leading `*.`"),
        "" => bail!("missing host"),
        h => HostPattern::Exact(h.to_string()),
    };
    Ok(Rule { scheme, host, port })
}

/// The client shared by every instance of the app.
#[derive(Clone)]
pub struct SharedClient(Client<HttpConnector, WasiBody>);

impl SharedClient {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(DEFAULT_CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            // hyper's adaptive read buffer doubles whenever a read fills it,
            // as it does for a streamed answer read behind a busy guest:
            // heaptrack saw 24 KB per open LLM stream. A fixed size bounds it;
            // it also caps a response head, at nginx's largest default.
            .http1_read_buf_exact_size(OUTBOUND_READ_BUFFER)
            .build(connector);
        SharedClient(client)
    }
}

/// Per-store outbound hooks: the component's allow-list, the shared client
/// and the open inbound requests whose cancellation outbound calls follow.
#[derive(Clone)]
pub struct Outbound {
    pub allow: Arc<AllowList>,
    pub client: SharedClient,
    pub cancel: Registry,
    pub metrics: Arc<Metrics>,
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type SendFuture = Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> SendFuture {
        if !self.allow.allows(request.uri()) {
            tracing::warn!(uri = %request.uri(), "outbound request denied: host not in allowed_outbound_hosts");
            self.metrics.outbound("denied");
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        // The gateway forwards its inbound request id: tie this call to it.
        let token = request
            .headers()
            .get(crate::server::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(|id| self.cancel.token(id));
        let client = self.client.0.clone();
        let metrics = self.metrics.clone();
        Box::new(async move {
            let send = send(client, request, options);
            let sent = match &token {
                Some(t) => tokio::select! {
                    r = send => r,
                    _ = t.cancelled() => {
                        metrics.outbound("cancelled");
                        return Err(HttpError::ConnectionTerminated);
                    }
                },
                None => send.await,
            };
            metrics.outbound(if sent.is_ok() { "ok" } else { "error" });
            let (res, io) = sent?;
            let res = match token {
                Some(t) => res.map(|body| CancellableBody::new(body, t).boxed_unsync()),
                None => res,
            };
            Ok((res, io))
        })
    }
}

async fn send(
    client: Client<HttpConnector, WasiBody>,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    if request.uri().scheme() == Some(&http::uri::Scheme::HTTPS) {
        // TLS goes through wasmtime's sender (rustls), unpooled: the LLM
        // upstreams this service is built for are plain HTTP on a private
        // network in the common deployment.
        let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
        return Ok((res.map(BodyExt::boxed_unsync), Box::new(io) as IoFuture));
    }
    let call = client.request(request);
    let res = match options.and_then(|o| o.first_byte_timeout) {
        Some(t) => tokio::time::timeout(t, call).await.map_err(|_| HttpError::HttpResponseTimeout)?,
        None => call.await,
    }
    .map_err(|e| {
        if e.is_connect() { HttpError::ConnectionRefused } else { HttpError::InternalError(Some(e.to_string())) }
    })?;
    let res = res.map(|body| body.map_err(HttpError::from).boxed_unsync());
    // The pooled client drives its connections itself.
    Ok((res, Box::new(async { Ok(()) }) as IoFuture))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(entries: &[&str]) -> AllowList {
        AllowList::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn ok(list: &AllowList, uri: &str) -> bool {
        list.allows(&uri.parse().unwrap())
    }

    #[test]
    fn deny_by_default_and_exact_match() {
        let list = allow(&["http://127.0.0.1:8080", ""]);
        assert!(ok(&list, "http://127.0.0.1:8080/v1/chat/completions"));
        assert!(!ok(&list, "http://127.0.0.1:8081/"));
        assert!(!ok(&list, "https://127.0.0.1:8080/"));
        assert!(!ok(&allow(&[]), "http://example.com/"));
    }

    #[test]
    fn wildcards_do_not_cover_internal_addresses() {
        let list = allow(&["https://*:*", "http://*.example.com"]);
        assert!(ok(&list, "https://api.openai.com/v1"));
        assert!(!ok(&list, "https://10.0.0.1/"));
        assert!(!ok(&list, "https://169.254.169.254/"));
        assert!(ok(&list, "http://a.example.com/"));
        assert!(!ok(&list, "http://example.org/"));
    }

    #[test]
    fn paths_are_rejected() {
        assert!(AllowList::parse(&["http://h:1/v1".to_string()]).is_err());
    }
}
