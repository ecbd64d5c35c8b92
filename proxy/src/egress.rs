//! [`Egress`]: the plain forward proxy of the agent's intranet listener, for
//! a virtual server's ordinary outbound HTTP calls to hosts that are not
//! virtual servers (its `http_proxy` points at the listener).
//!
//! Unlike [`crate::Proxy`] it adds nothing: the caller's headers go on
//! minus the hop-by-hop ones (and so minus `Proxy-Authorization`), `Host`
//! stays the caller's. The caller (the agent) has already resolved and
//! vetted the address: the connection goes to that address, not to a second
//! lookup of the name.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::{header, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::json_error;
use crate::reserved::{connection_listed, is_hop_by_hop};

/// A TCP connect to an outside host never takes longer than this.
pub const EGRESS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle keep-alive connections to outside hosts are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle keep-alive connections kept per outside address.
const POOL_MAX_IDLE_PER_HOST: usize = 8;

/// A pooled HTTP/1.1 client for forwarded calls. Cheap to clone.
#[derive(Clone)]
pub struct Egress {
    client: Client<HttpConnector, Body>,
}

impl Default for Egress {
    fn default() -> Self {
        Egress::new()
    }
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress").finish_non_exhaustive()
    }
}

/// One forwarded call: where it goes and how long it may take.
pub struct EgressCall {
    /// The vetted address to connect to.
    pub upstream: SocketAddr,
    /// The `Host` header the caller asked for (`name[:port]`).
    pub host: HeaderValue,
    /// Path and query of the caller's absolute URI.
    pub path: PathAndQuery,
    /// Time allowed until the response headers arrive.
    pub timeout: Duration,
    /// Dropped when the response body ends (or the caller leaves), or at
    /// once with an error answer: a concurrency permit, say.
    pub guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl Egress {
    /// Idle connections kept 30 s, at most 8 per address; 5 s to connect.
    pub fn new() -> Egress {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(EGRESS_CONNECT_TIMEOUT));
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .build(connector);
        Egress { client }
    }

    /// Sends `req` to `call.upstream` and streams the answer back. Never
    /// fails: 504 when the response headers miss `call.timeout`, 502 when
    /// the host cannot be reached or closes the connection, 400 for a
    /// request body that cannot be read. Bodies are streamed both ways.
    pub async fn forward(&self, call: EgressCall, req: Request<Body>) -> Response<Body> {
        let EgressCall {
            upstream,
            host,
            path,
            timeout,
            guard,
        } = call;
        let (parts, body) = req.into_parts();
        let mut uri_parts = axum::http::uri::Parts::default();
        uri_parts.scheme = Some(Scheme::HTTP);
        let Ok(authority) = Authority::try_from(upstream.to_string()) else {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the target address is not a valid authority",
            );
        };
        uri_parts.authority = Some(authority);
        uri_parts.path_and_query = Some(path);
        let Ok(uri) = Uri::from_parts(uri_parts) else {
            return json_error(StatusCode::BAD_REQUEST, "bad_request", "invalid URI");
        };
        let mut headers = parts.headers;
        let listed = connection_listed(&headers);
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|k| is_hop_by_hop(k) || listed.contains(k) || *k == header::EXPECT)
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(&name);
        }
        headers.insert(header::HOST, host.clone());
        let mut up = Request::new(body);
        *up.method_mut() = parts.method;
        *up.uri_mut() = uri;
        *up.version_mut() = Version::HTTP_11;
        *up.headers_mut() = headers;
        let shown = String::from_utf8_lossy(host.as_bytes()).into_owned();
        let resp = match tokio::time::timeout(timeout, self.client.request(up)).await {
            Ok(Ok(resp)) => resp,
            Err(_) => {
                return json_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gateway_timeout",
                    &format!("{shown} did not answer within {} s", timeout.as_secs_f64()),
                )
            }
            Ok(Err(e)) if e.is_connect() => {
                return json_error(
                    StatusCode::BAD_GATEWAY,
                    "bad_gateway",
                    &format!("could not connect to {shown} ({upstream})"),
                )
            }
            Ok(Err(e)) => {
                tracing::debug!(%upstream, error = ?e, "forwarded exchange failed");
                return json_error(
                    StatusCode::BAD_GATEWAY,
                    "bad_gateway",
                    &format!("{shown} closed the connection without answering"),
                );
            }
        };
        let (mut rparts, rbody) = resp.into_parts();
        let listed = connection_listed(&rparts.headers);
        let doomed: Vec<HeaderName> = rparts
            .headers
            .keys()
            .filter(|k| is_hop_by_hop(k) || listed.contains(k))
            .cloned()
            .collect();
        for name in doomed {
            rparts.headers.remove(&name);
        }
        let body = GuardedBody {
            inner: rbody,
            guard,
        };
        Response::from_parts(rparts, Body::new(body))
    }
}

/// A response body that holds the call's guard until it ends.
struct GuardedBody {
    inner: hyper::body::Incoming,
    guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl hyper::body::Body for GuardedBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = std::task::ready!(std::pin::Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(_)) if this.inner.is_end_stream() => this.guard = None,
            Some(Ok(_)) => {}
            Some(Err(_)) | None => this.guard = None,
        }
        std::task::Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
