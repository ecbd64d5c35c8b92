//! [`Proxy::forward`]: one exchange with a virtual-server instance.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::header::{self, HeaderName};
use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use metrics::Counter;

use crate::access_log::{now_unix, AccessEntry};
use crate::reserved::{connection_listed, is_hop_by_hop, is_reserved_header, reserved_uri};
use crate::stats::{MetricsCache, Series, VsSeries};
use crate::{json_error, AccessLog, InvokeContext, NotServed};

const H_TITLE_ID: HeaderName = HeaderName::from_static("titleid");
const H_TITLE_REGION_ID: HeaderName = HeaderName::from_static("titleregionid");
const H_INVOKER: HeaderName = HeaderName::from_static("invoker");
const H_PLAYER_ID: HeaderName = HeaderName::from_static("playerid");
const H_SESSION_ID: HeaderName = HeaderName::from_static("sessionid");
const H_X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Idle keep-alive connections to VS instances are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle keep-alive connections kept per VS instance.
const POOL_MAX_IDLE_PER_HOST: usize = 1024;
/// A TCP connect to an instance never takes longer than this (the
/// exchange's own timeout is usually shorter).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The invoke edge's reverse proxy. Cheap to clone: clones share one pooled
/// keep-alive HTTP/1.1 client and the metric handles.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    client: HttpClient,
    stats: MetricsCache,
}

impl Default for Proxy {
    fn default() -> Self {
        Proxy::new()
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

type HttpClient = Client<HttpConnector, RequestBody>;

thread_local! {
    /// The connection pool of this thread, when it is one of the edge's
    /// own threads ([`Proxy::use_thread_pool`]).
    static THREAD_CLIENT: std::cell::RefCell<Option<HttpClient>> =
        const { std::cell::RefCell::new(None) };
}

fn build_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .http1_title_case_headers(true)
        .build(connector)
}

impl Proxy {
    /// Gives the calling thread a connection pool of its own, used by every
    /// [`Proxy`] that forwards from this thread (the pool's connections are
    /// driven by tasks spawned on this thread's runtime, so a call and its
    /// upstream connection stay on one thread). For threads that run a
    /// single-threaded runtime for their whole life, such as the edge's.
    pub fn use_thread_pool() {
        THREAD_CLIENT.with(|c| *c.borrow_mut() = Some(build_client()));
    }

    /// A proxy with its own connection pool: HTTP/1.1, `TCP_NODELAY`, idle
    /// connections kept 60 s, up to 1024 idle per instance. Header names go
    /// out title-cased (`Titleid`, `Invoker`, `X-Forwarded-For`), the seed's
    /// spelling.
    ///
    /// Create it after the metrics recorder is installed: metric handles are
    /// taken from the recorder present when a VS is first proxied to.
    pub fn new() -> Proxy {
        let client = build_client();
        crate::stats::describe();
        Proxy {
            inner: Arc::new(Inner {
                client,
                stats: MetricsCache::default(),
            }),
        }
    }

    /// Sends `req` to the VS instance at `upstream` as `ctx` says and streams
    /// the answer back. Never fails: problems become JSON error answers
    /// (504 when the VS's response headers do not arrive within
    /// `ctx.timeout`, 502 when it cannot be reached or breaks the connection,
    /// 403 when a non-platform caller targets a reserved `/pgos_*` URI).
    ///
    /// The caller's headers go up except hop-by-hop ones (and those named in
    /// `Connection`), `Expect`, `Host` and [`crate::RESERVED_HEADERS`]; then
    /// `Host` (the instance's address), `Titleid`, `Titleregionid`, `Invoker`,
    /// `Playerid` + `Sessionid` (when `ctx.player` is set) and
    /// `X-Forwarded-For` (the caller's chain, then `ctx.client_ip`) are set.
    /// Metrics and the access-log line are recorded, and `ctx.guard` dropped,
    /// when the response body ends, fails, or is dropped by the caller — or
    /// right away for an error answer.
    pub async fn forward(
        &self,
        upstream: SocketAddr,
        req: Request<Body>,
        ctx: InvokeContext,
    ) -> Response<Body> {
        let (parts, body) = req.into_parts();
        self.forward_parts(upstream, &parts, body, ctx).await
    }

    /// [`Proxy::forward`] of a request given as its head and its body: a
    /// caller that may send the same request again (to another instance)
    /// keeps the head instead of cloning it for every attempt.
    pub async fn forward_parts(
        &self,
        upstream: SocketAddr,
        parts: &axum::http::request::Parts,
        body: Body,
        ctx: InvokeContext,
    ) -> Response<Body> {
        let start = Instant::now();
        let InvokeContext {
            title_id,
            title_region_id,
            vs_name,
            invoker,
            player,
            client_ip,
            upstream_path,
            timeout,
            metric_url,
            access_log,
            guard,
            retry_unserved,
        } = ctx;
        let vs = self.inner.stats.vs(&title_region_id, &vs_name);
        let url = metric_url.as_deref().map(|u| vs.url(u));
        let access = access_log.map(|log| PendingAccess {
            log,
            method: parts.method.clone(),
            uri: upstream_path.clone(),
            version: parts.version,
            referer: parts.headers.get(header::REFERER).cloned(),
            user_agent: parts.headers.get(header::USER_AGENT).cloned(),
        });
        let mut exchange = Exchange {
            start,
            vs,
            url,
            status: 499,
            bytes_out: 0,
            client_ip,
            access,
            guard,
            counted: true,
        };

        if parts.method == Method::CONNECT {
            return exchange.fail(
                StatusCode::METHOD_NOT_ALLOWED,
                "bad_request",
                "CONNECT cannot be proxied to a virtual server",
            );
        }
        if !invoker.is_platform() {
            if let Some(uri) = reserved_uri(&upstream_path) {
                return exchange.fail(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    &format!("{uri} is reserved for PGOS; a {invoker} caller cannot invoke it"),
                );
            }
        }

        let authority = Bytes::from(upstream.to_string());
        let path = if upstream_path.starts_with('/') {
            Bytes::from(upstream_path)
        } else {
            Bytes::from(format!("/{upstream_path}"))
        };
        let (Ok(authority_part), Ok(path), Ok(host)) = (
            Authority::from_maybe_shared(authority.clone()),
            PathAndQuery::from_maybe_shared(path),
            HeaderValue::from_maybe_shared(authority),
        ) else {
            return exchange.fail(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the path is not a valid URI path",
            );
        };
        let mut uri_parts = axum::http::uri::Parts::default();
        uri_parts.scheme = Some(Scheme::HTTP);
        uri_parts.authority = Some(authority_part);
        uri_parts.path_and_query = Some(path);
        let Ok(uri) = Uri::from_parts(uri_parts) else {
            return exchange.fail(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the path is not a valid URI path",
            );
        };

        let Some(mut headers) = upstream_headers(&parts.headers, client_ip) else {
            return exchange.fail(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "invalid X-Forwarded-For header",
            );
        };
        headers.insert(header::HOST, host);
        let edge_values = (
            HeaderValue::from_str(&title_id),
            HeaderValue::from_str(&title_region_id),
        );
        let (Ok(title_id), Ok(title_region_id)) = edge_values else {
            return exchange.fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "title id or title region id is not a valid header value",
            );
        };
        headers.insert(H_TITLE_ID, title_id);
        headers.insert(H_TITLE_REGION_ID, title_region_id);
        headers.insert(H_INVOKER, invoker.header_value());
        if let Some(p) = &player {
            let (Ok(pid), Ok(sid)) = (
                HeaderValue::from_str(&p.player_id),
                HeaderValue::from_str(&p.session_id),
            ) else {
                return exchange.fail(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "player id or session id is not a valid header value",
                );
            };
            headers.insert(H_PLAYER_ID, pid);
            headers.insert(H_SESSION_ID, sid);
        }

        let body = RequestBody {
            inner: body,
            vs: exchange.vs.base.bytes_in.clone(),
            url: exchange.url.as_ref().map(|u| u.bytes_in.clone()),
        };
        let idempotent = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        );
        let mut up = Request::new(body);
        *up.method_mut() = parts.method.clone();
        *up.uri_mut() = uri;
        *up.version_mut() = Version::HTTP_11;
        *up.headers_mut() = headers;

        // This thread's own pool if it has one, else the proxy's (a clone
        // of a client shares its pool).
        let client = THREAD_CLIENT
            .with(|c| c.borrow().clone())
            .unwrap_or_else(|| self.inner.client.clone());
        let resp = match tokio::time::timeout(timeout, client.request(up)).await {
            Ok(Ok(resp)) => resp,
            Err(_) => {
                return exchange.fail(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gateway_timeout",
                    &format!(
                        "virtual server {vs_name} did not answer within {}",
                        fmt_limit(timeout)
                    ),
                );
            }
            Ok(Err(e)) => {
                tracing::debug!(vs = %vs_name, %upstream, error = ?e, "virtual server exchange failed");
                let retryable = e.is_connect()
                    || (idempotent && !caused_by_request_body(&e) && !e.is_connect());
                if retry_unserved && retryable {
                    // Not an answer the caller sees: it tries another instance.
                    exchange.counted = false;
                    let mut resp = exchange.fail(
                        StatusCode::BAD_GATEWAY,
                        "bad_gateway",
                        &format!("virtual server {vs_name} did not serve the call"),
                    );
                    resp.extensions_mut().insert(NotServed);
                    return resp;
                }
                if e.is_connect() {
                    return exchange.fail(
                        StatusCode::BAD_GATEWAY,
                        "bad_gateway",
                        &format!("could not connect to virtual server {vs_name}"),
                    );
                }
                if caused_by_request_body(&e) {
                    return exchange.fail(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "the request body could not be read",
                    );
                }
                return exchange.fail(
                    StatusCode::BAD_GATEWAY,
                    "bad_gateway",
                    &format!("virtual server {vs_name} closed the connection without answering"),
                );
            }
        };

        let (mut rparts, rbody) = resp.into_parts();
        strip_hop_by_hop(&mut rparts.headers);
        exchange.status = rparts.status.as_u16();
        let body = ResponseBody {
            inner: rbody,
            exchange: Some(exchange),
        };
        Response::from_parts(rparts, Body::new(body))
    }
}

/// The caller's headers minus the ones that must not go up, with
/// `X-Forwarded-For` rebuilt. `None` if the caller's chain is unusable.
fn upstream_headers(headers: &HeaderMap, client_ip: Option<std::net::IpAddr>) -> Option<HeaderMap> {
    // Headers named in `Connection` are hop-by-hop too (usually none: no
    // allocation then).
    let listed = if headers.contains_key(header::CONNECTION) {
        connection_listed(headers)
    } else {
        Vec::new()
    };
    let mut out = HeaderMap::with_capacity(headers.len() + 8);
    let mut xff: Vec<u8> = Vec::new();
    for (name, value) in headers {
        if *name == H_X_FORWARDED_FOR {
            let v = value.as_bytes().trim_ascii();
            if !v.is_empty() {
                if !xff.is_empty() {
                    xff.extend_from_slice(b", ");
                }
                xff.extend_from_slice(v);
            }
            continue;
        }
        if is_hop_by_hop(name)
            || is_reserved_header(name)
            || *name == header::HOST
            || *name == header::EXPECT
            || listed.contains(name)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Some(ip) = client_ip {
        use std::io::Write as _;
        if !xff.is_empty() {
            xff.extend_from_slice(b", ");
        }
        let _ = write!(xff, "{ip}");
    }
    if !xff.is_empty() {
        out.insert(H_X_FORWARDED_FOR, HeaderValue::from_bytes(&xff).ok()?);
    }
    Some(out)
}

/// Removes hop-by-hop headers (and those named in `Connection`) from a
/// response.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let listed = connection_listed(headers);
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_hop_by_hop(k) || listed.contains(k))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(&name);
    }
}

/// Whether the client error came from reading the caller's request body.
fn caused_by_request_body(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<axum::Error>().is_some() {
            return true;
        }
        source = s.source();
    }
    false
}

/// `10 s`, `2.5 s` or `200 ms`.
fn fmt_limit(d: Duration) -> String {
    let ms = d.as_millis();
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else if ms >= 1000 {
        format!("{} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

/// What the access-log line needs from the request.
struct PendingAccess {
    log: AccessLog,
    method: Method,
    uri: String,
    version: Version,
    referer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
}

/// One exchange in flight. Dropping it records the metrics and the access
/// log line and drops the edge's guard: this happens when the response body
/// ends or fails, when the caller drops it, when `forward` answers with an
/// error, or when the caller goes away before the answer (status 499, like
/// nginx).
struct Exchange {
    start: Instant,
    vs: Arc<VsSeries>,
    url: Option<Arc<Series>>,
    status: u16,
    bytes_out: u64,
    client_ip: Option<std::net::IpAddr>,
    access: Option<PendingAccess>,
    guard: Option<Box<dyn std::any::Any + Send + Sync>>,
    /// Recorded in the metrics and the access log when dropped.
    counted: bool,
}

impl Exchange {
    fn fail(mut self, status: StatusCode, code: &str, message: &str) -> Response<Body> {
        let resp = json_error(status, code, message);
        self.status = status.as_u16();
        self.bytes_out = resp.body().size_hint().exact().unwrap_or(0);
        drop(self);
        resp
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.counted {
            drop(self.guard.take());
            return;
        }
        let elapsed = self.start.elapsed().as_secs_f64();
        self.vs.base.requests(self.status).increment(1);
        self.vs.base.duration.record(elapsed);
        if let Some(u) = &self.url {
            u.requests(self.status).increment(1);
            u.duration.record(elapsed);
        }
        if let Some(a) = self.access.take() {
            a.log.append(&AccessEntry {
                time_unix: now_unix(),
                remote_addr: self.client_ip,
                method: a.method.as_str(),
                uri: &a.uri,
                version: a.version,
                status: self.status,
                body_bytes_sent: self.bytes_out,
                referer: a.referer.as_ref().map(HeaderValue::as_bytes),
                user_agent: a.user_agent.as_ref().map(HeaderValue::as_bytes),
            });
        }
        drop(self.guard.take());
    }
}

/// The caller's request body on its way up, counted.
struct RequestBody {
    inner: Body,
    vs: Counter,
    url: Option<Counter>,
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(f)) = &frame {
            if let Some(data) = f.data_ref() {
                let n = data.len() as u64;
                this.vs.increment(n);
                if let Some(u) = &this.url {
                    u.increment(n);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The VS's response body on its way down, counted; ends the exchange when it
/// ends.
struct ResponseBody {
    inner: Incoming,
    exchange: Option<Exchange>,
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let (Some(data), Some(ex)) = (f.data_ref(), this.exchange.as_mut()) {
                    let n = data.len() as u64;
                    ex.bytes_out += n;
                    ex.vs.base.bytes_out.increment(n);
                    if let Some(u) = &ex.url {
                        u.bytes_out.increment(n);
                    }
                }
                if this.inner.is_end_stream() {
                    this.exchange = None;
                }
            }
            Some(Err(_)) | None => this.exchange = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_well() {
        assert_eq!(fmt_limit(Duration::from_secs(10)), "10 s");
        assert_eq!(fmt_limit(Duration::from_secs(3)), "3 s");
        assert_eq!(fmt_limit(Duration::from_millis(2500)), "2.5 s");
        assert_eq!(fmt_limit(Duration::from_millis(200)), "200 ms");
    }

    #[test]
    fn caller_headers_are_filtered() {
        let mut h = HeaderMap::new();
        h.append("content-type", "text/plain".parse().unwrap());
        h.append("x-custom", "1".parse().unwrap());
        h.append("x-custom", "2".parse().unwrap());
        h.append("connection", "keep-alive, X-Hop".parse().unwrap());
        h.append("x-hop", "secret".parse().unwrap());
        h.append("keep-alive", "timeout=5".parse().unwrap());
        h.append("transfer-encoding", "chunked".parse().unwrap());
        h.append("proxy-authorization", "Basic x".parse().unwrap());
        h.append("te", "trailers".parse().unwrap());
        h.append("upgrade", "websocket".parse().unwrap());
        h.append("host", "edge.example".parse().unwrap());
        h.append("expect", "100-continue".parse().unwrap());
        h.append("PlayerId", "evil".parse().unwrap());
        h.append("invoker", "event".parse().unwrap());
        h.append("secretid", "s".parse().unwrap());
        h.append("x-forwarded-for", "1.1.1.1".parse().unwrap());
        h.append("x-forwarded-for", "2.2.2.2, 3.3.3.3".parse().unwrap());
        let out = upstream_headers(&h, Some("9.9.9.9".parse().unwrap())).unwrap();
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-type", "x-custom", "x-forwarded-for"]);
        let custom: Vec<_> = out.get_all("x-custom").iter().collect();
        assert_eq!(custom, ["1", "2"]);
        assert_eq!(out["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 3.3.3.3, 9.9.9.9");

        let out = upstream_headers(&HeaderMap::new(), None).unwrap();
        assert!(out.is_empty());
        let out = upstream_headers(&HeaderMap::new(), Some("::1".parse().unwrap())).unwrap();
        assert_eq!(out["x-forwarded-for"], "::1");
    }

    #[test]
    fn response_hop_by_hop_headers_are_stripped() {
        let mut h = HeaderMap::new();
        h.append("content-type", "text/plain".parse().unwrap());
        h.append("content-length", "5".parse().unwrap());
        h.append("connection", "close, x-internal".parse().unwrap());
        h.append("x-internal", "1".parse().unwrap());
        h.append("keep-alive", "timeout=5".parse().unwrap());
        h.append("proxy-authenticate", "Basic".parse().unwrap());
        strip_hop_by_hop(&mut h);
        let names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-type", "content-length"]);
    }
}
