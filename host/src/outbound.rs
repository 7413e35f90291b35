//! Outbound HTTP for components: the `allowed_outbound_hosts` allow-list
//! (deny by default) and one pooled keep-alive client shared by every
//! instance, where wasmtime's default sender opens a connection per request.
//!
//! A wildcard rule never reaches an internal address (loopback, private,
//! link-local, CGNAT, multicast, IPv4-mapped IPv6 ...): IP literals are
//! checked against the rules, and names are checked after DNS, on every
//! address the connection may use, so that other spellings of an address
//! (`2130706433`, `127.1`, `0`) and names that resolve inwards (DNS
//! rebinding included) are refused too. Only a rule naming the exact host
//! reaches an internal address.

use crate::cancel::{CancellableBody, Registry};
use crate::metrics::Metrics;
use anyhow::{Context, bail};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
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
    /// an internal IP literal: those must be listed.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        self.reach(uri).is_some()
    }

    /// How far a request to `uri` may go: `None` when no rule allows it.
    pub fn reach(&self, uri: &http::Uri) -> Option<Reach> {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return None;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let port = uri.port_u16().or(match scheme {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        });
        let literal = host.parse::<IpAddr>().ok();
        let mut reach = None;
        for r in &self.rules {
            if !(r.scheme.as_deref().is_none_or(|s| s == scheme) && r.port.is_none_or(|p| Some(p) == port)) {
                continue;
            }
            match &r.host {
                HostPattern::Exact(h) if *h == host => return Some(Reach::Named),
                HostPattern::Suffix(s) if host.ends_with(s.as_str()) && !literal.is_some_and(is_internal) => {
                    reach = Some(Reach::Public)
                }
                HostPattern::Any if !literal.is_some_and(is_internal) => reach = Some(Reach::Public),
                _ => {}
            }
        }
        reach
    }
}

/// What an allowed request may connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// A rule names the host: any address it resolves to.
    Named,
    /// Only wildcards cover the host: public addresses only.
    Public,
}

/// Addresses a wildcard rule never reaches.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_multicast()
                || ip.is_broadcast()
                // 0.0.0.0/8 ("this network"), CGNAT 100.64.0.0/10, IETF
                // protocol assignments 192.0.0.0/24, benchmarking
                // 198.18.0.0/15 and reserved 240.0.0.0/4.
                || a == 0
                || (a == 100 && (b & 0xc0) == 64)
                || (a == 192 && b == 0 && ip.octets()[2] == 0)
                || (a == 198 && (b & 0xfe) == 18)
                || a >= 240
        }
        IpAddr::V6(ip) => {
            let first = ip.segments()[0];
            ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d)
                // addresses reach IPv4 hosts by another spelling, and so do
                // NAT64 (64:ff9b::/96, 64:ff9b:1::/48) and 6to4 (2002::/16)
                // through a gateway: none is covered by a wildcard.
                || ip.to_ipv4_mapped().is_some()
                || ip.segments()[..6].iter().all(|s| *s == 0)
                || (first == 0x64 && ip.segments()[1] == 0xff9b)
                || first == 0x2002
        }
    }
}

/// The system resolver, refusing names that resolve to an internal address
/// when the request may reach public addresses only. Runs for every new
/// connection, so a name that turns inwards later (DNS rebinding) is
/// refused then.
#[derive(Clone)]
struct GuardedResolver {
    inner: GaiResolver,
    reach: Reach,
}

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolving = self.inner.call(name.clone());
        let reach = self.reach;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = resolving.await?.collect();
            check_resolved(&name, reach, &addrs)?;
            Ok(addrs.into_iter())
        })
    }
}

fn check_resolved(name: &Name, reach: Reach, addrs: &[SocketAddr]) -> std::io::Result<()> {
    if reach == Reach::Public
        && let Some(addr) = addrs.iter().find(|a| is_internal(a.ip()))
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} resolves to the internal address {}, which only a rule naming it exactly allows",
                name.as_str(),
                addr.ip()
            ),
        ));
    }
    Ok(())
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
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((h, after)) = v6.split_once(']') else { bail!("unclosed `[` in the host") };
        match after {
            "" => (h, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => bail!("unexpected {after:?} after the host"),
            },
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
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

/// The clients shared by every instance of the app, one per [`Reach`]
/// (their connections differ in which addresses they may use).
#[derive(Clone)]
pub struct SharedClient {
    named: Client<HttpConnector<GuardedResolver>, WasiBody>,
    public: Client<HttpConnector<GuardedResolver>, WasiBody>,
}

impl SharedClient {
    pub fn new() -> Self {
        SharedClient { named: client(Reach::Named), public: client(Reach::Public) }
    }

    fn get(&self, reach: Reach) -> Client<HttpConnector<GuardedResolver>, WasiBody> {
        match reach {
            Reach::Named => self.named.clone(),
            Reach::Public => self.public.clone(),
        }
    }
}

fn client(reach: Reach) -> Client<HttpConnector<GuardedResolver>, WasiBody> {
    let mut connector = HttpConnector::new_with_resolver(GuardedResolver { inner: GaiResolver::new(), reach });
    connector.set_connect_timeout(Some(DEFAULT_CONNECT_TIMEOUT));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        // hyper's adaptive read buffer doubles whenever a read fills it,
        // as it does for a streamed answer read behind a busy guest, and
        // every open LLM stream keeps its grown buffer. A fixed size
        // bounds the memory per stream; it also caps a response head, at
        // nginx's largest default.
        .http1_read_buf_exact_size(OUTBOUND_READ_BUFFER)
        .build(connector)
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
        let Some(reach) = self.allow.reach(request.uri()) else {
            // Only the origin: the rest of a URL may hold credentials.
            let origin =
                format!("{}://{}", request.uri().scheme_str().unwrap_or(""), request.uri().host().unwrap_or(""));
            tracing::warn!(%origin, "outbound request denied: host not in allowed_outbound_hosts");
            self.metrics.outbound("denied");
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        };
        // The gateway forwards its inbound request id: tie this call to it.
        let token = request
            .headers()
            .get(crate::server::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(|id| self.cancel.token(id));
        let client = self.client.get(reach);
        let metrics = self.metrics.clone();
        Box::new(async move {
            let send = send(client, reach, request, options);
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
    client: Client<HttpConnector<GuardedResolver>, WasiBody>,
    reach: Reach,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    if request.uri().scheme() == Some(&http::uri::Scheme::HTTPS) {
        // wasmtime's sender resolves the name itself: check it first. (A
        // name that turns inwards between the two lookups still has to
        // present a certificate for that name.)
        if reach == Reach::Public
            && let Some(host) = request.uri().host().map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            && host.parse::<IpAddr>().is_err()
        {
            let port = request.uri().port_u16().unwrap_or(443);
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| HttpError::DnsError { rcode: Some(e.to_string()), info_code: None })?
                .collect();
            let name: Name = host.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;
            if let Err(e) = check_resolved(&name, reach, &addrs) {
                tracing::warn!("outbound request denied: {e}");
                return Err(HttpError::DestinationIpProhibited);
            }
        }
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
        // A name refused after DNS says so, rather than "connection refused".
        let refused = std::iter::successors(std::error::Error::source(&e), |c| c.source())
            .filter_map(|c| c.downcast_ref::<std::io::Error>())
            .find(|io| io.kind() == std::io::ErrorKind::PermissionDenied);
        match refused {
            Some(io) => {
                tracing::warn!("outbound request denied: {io}");
                HttpError::DestinationIpProhibited
            }
            None if e.is_connect() => HttpError::ConnectionRefused,
            None => HttpError::InternalError(Some(e.to_string())),
        }
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
    fn wildcards_reach_no_internal_literal_in_any_spelling() {
        let list = allow(&["http://*:3291", "http://*.example.com"]);
        for host in [
            "127.0.0.1",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "[::127.0.0.1]",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "[fd00::1]",
            "[fe80::1]",
            "[ff02::1]",
            "[64:ff9b::a00:1]",
            "[64:ff9b:1::a00:1]",
            "[2002:a00:1::]",
            "198.18.0.1",
            "192.0.0.8",
            "240.0.0.1",
        ] {
            assert!(!ok(&list, &format!("http://{host}:3291/")), "{host}");
        }
        // Names go to the resolver check; public literals pass.
        assert_eq!(list.reach(&"http://llm.example.com/".parse().unwrap()), Some(Reach::Public));
        assert!(ok(&list, "http://8.8.8.8:3291/"));
        assert!(ok(&list, "http://[2001:4860::8888]:3291/"));
        // A rule naming the host reaches it whatever it is.
        let named = allow(&["http://127.0.0.1:3291", "http://[::1]", "http://localhost:8080"]);
        assert_eq!(named.reach(&"http://127.0.0.1:3291/".parse().unwrap()), Some(Reach::Named));
        assert_eq!(named.reach(&"http://[::1]/".parse().unwrap()), Some(Reach::Named));
        assert_eq!(named.reach(&"http://localhost:8080/".parse().unwrap()), Some(Reach::Named));
    }

    #[test]
    fn names_that_resolve_inwards_are_refused_only_for_wildcards() {
        let name: Name = "evil.example.com".parse().unwrap();
        let inward = ["127.0.0.1:80".parse().unwrap(), "93.184.216.34:80".parse().unwrap()];
        let outward = ["93.184.216.34:80".parse().unwrap()];
        assert!(check_resolved(&name, Reach::Public, &inward).is_err(), "one internal address is enough");
        assert!(check_resolved(&name, Reach::Public, &outward).is_ok());
        assert!(check_resolved(&name, Reach::Named, &inward).is_ok());
    }

    #[test]
    fn bracketed_ipv6_rules_take_an_optional_port() {
        assert!(AllowList::parse(&["http://[::1]".to_string()]).is_ok());
        assert!(ok(&allow(&["http://[::1]"]), "http://[::1]/x"));
        assert!(ok(&allow(&["http://[::1]:8080"]), "http://[::1]:8080/x"));
        assert!(!ok(&allow(&["http://[::1]:8080"]), "http://[::1]:8081/x"));
        assert!(AllowList::parse(&["http://[::1".to_string()]).is_err());
    }

    #[test]
    fn paths_are_rejected() {
        assert!(AllowList::parse(&["http://h:1/v1".to_string()]).is_err());
    }
}
