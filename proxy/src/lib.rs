//! The invoke edge's streaming HTTP reverse proxy and its rules.
//!
//! The edge (`/virtualserver/invoke/{vs_name}/{path...}`) authenticates the
//! caller, picks an upstream instance of the virtual server (VS), and hands the
//! request to [`Proxy::forward`], which:
//!
//! - streams the request body up and the response body down (nothing is
//!   buffered whole);
//! - drops hop-by-hop headers, the PGOS reserved headers ([`RESERVED_HEADERS`])
//!   and `Host`, then sets the headers a VS can trust: `Titleid`,
//!   `Titleregionid`, `Invoker`, `Playerid` + `Sessionid` (game-client calls
//!   only) and `X-Forwarded-For` (the seed's §5.2);
//! - answers 504 when the VS's response headers do not arrive in time (§5.6),
//!   502 when the VS cannot be reached;
//! - refuses the reserved `/pgos_*` URIs (§5.1, [`reserved_uri`]) to callers
//!   that are not the platform itself (defence in depth; the edge checks first);
//! - counts requests, latency and bytes per VS (and per whitelisted URL) through
//!   the `metrics` facade (§10) and writes nginx "combined" access-log lines
//!   (§9, [`AccessLogStore`]).
//!
//! The `PlayerTicket` a game backend hands to a game client is minted and
//! verified by `respawn_types::ticket::player`.

mod access_log;
mod egress;
mod forward;
mod invoke;
mod pick;
mod reserved;
mod stats;

use std::net::IpAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};

pub use access_log::{AccessEntry, AccessLog, AccessLogStore, DEFAULT_MAX_FILE_BYTES};
pub use egress::{Egress, EgressCall, EGRESS_CONNECT_TIMEOUT};
pub use forward::Proxy;
pub use invoke::{upstream_path, COLD_START_WAIT};
pub use pick::pick_instance;
pub use reserved::{reserved_uri, RESERVED_HEADERS};
pub use respawn_types::ticket::player::PlayerIdentity;

/// Who is calling the virtual server: the value of the `Invoker` header the
/// VS receives (seed §5.2). The caller can never choose it. (The seed's
/// `economy`, `matchmaking` and `idip` invokers belong to PGOS services
/// Respawn does not have.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Invoker {
    /// A game backend through the backend HTTP API (`InvokeVirtualServer`).
    Backend,
    /// A game client through the client SDK (`InvokeVirtualServer`).
    Client,
    /// Another virtual server of the same title region, over the intranet.
    Intranet,
    /// A PGOS event delivered to `/pgos_event`.
    Event,
    /// A scheduled PGOS task delivered to `/pgos_task`.
    Task,
    /// An operator's browser, through the web console's browser access
    /// (seed: browsing a VS from the portal).
    Console,
}

impl Invoker {
    /// The header value: `backend`, `client`, `intranet`, `event`, `task`
    /// or `console`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Invoker::Backend => "backend",
            Invoker::Client => "client",
            Invoker::Intranet => "intranet",
            Invoker::Event => "event",
            Invoker::Task => "task",
            Invoker::Console => "console",
        }
    }

    /// The seed's timeout limits (§5.6): 3 s for events, 10 s for everything
    /// else.
    pub const fn default_timeout(self) -> Duration {
        match self {
            Invoker::Event => Duration::from_secs(3),
            _ => Duration::from_secs(10),
        }
    }

    /// Whether this invoker is the platform itself, the only one allowed to
    /// reach the reserved `/pgos_*` URIs.
    pub const fn is_platform(self) -> bool {
        matches!(self, Invoker::Event | Invoker::Task)
    }

    const fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }
}

impl std::fmt::Display for Invoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything the edge decided about one invocation.
pub struct InvokeContext {
    pub title_id: String,
    pub title_region_id: String,
    pub vs_name: String,
    pub invoker: Invoker,
    /// Set for game-client calls: becomes `Playerid` and `Sessionid`.
    pub player: Option<PlayerIdentity>,
    /// The caller's address, appended to `X-Forwarded-For`.
    pub client_ip: Option<IpAddr>,
    /// Path and query to send upstream, e.g. `/backend_hello?x=1`.
    pub upstream_path: String,
    /// Time allowed until the VS's response headers arrive.
    pub timeout: Duration,
    /// Set when this URL is whitelisted for per-URL metrics: the `url` label.
    pub metric_url: Option<String>,
    /// Some when the VS has access logging on.
    pub access_log: Option<AccessLog>,
    /// Opaque; dropped when the response body has been fully sent (or the
    /// caller went away), or when `forward` answers with an error.
    pub guard: Option<Box<dyn std::any::Any + Send + Sync>>,
    /// The caller can send the request again to another instance (it kept
    /// the body): an exchange that may be retried — the instance refused
    /// the connection (nothing was sent), or, for an idempotent method
    /// (RFC 9110 §9.2.2: GET, HEAD, OPTIONS, PUT, DELETE, TRACE), closed it
    /// without answering — is answered 502 marked [`NotServed`], and
    /// neither counted in the metrics nor written to the access log.
    pub retry_unserved: bool,
}

/// Marks (in the response's extensions) a 502 that [`Proxy::forward`]
/// answered for a retryable failure when the context asked for
/// [`InvokeContext::retry_unserved`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotServed;

impl InvokeContext {
    /// A context with the invoker's default timeout and nothing optional set.
    pub fn new(
        title_id: impl Into<String>,
        title_region_id: impl Into<String>,
        vs_name: impl Into<String>,
        invoker: Invoker,
        upstream_path: impl Into<String>,
    ) -> Self {
        InvokeContext {
            title_id: title_id.into(),
            title_region_id: title_region_id.into(),
            vs_name: vs_name.into(),
            invoker,
            player: None,
            client_ip: None,
            upstream_path: upstream_path.into(),
            timeout: invoker.default_timeout(),
            metric_url: None,
            access_log: None,
            guard: None,
            retry_unserved: false,
        }
    }
}

impl std::fmt::Debug for InvokeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvokeContext")
            .field("title_id", &self.title_id)
            .field("title_region_id", &self.title_region_id)
            .field("vs_name", &self.vs_name)
            .field("invoker", &self.invoker)
            .field("player", &self.player)
            .field("client_ip", &self.client_ip)
            .field("upstream_path", &self.upstream_path)
            .field("timeout", &self.timeout)
            .field("metric_url", &self.metric_url)
            .field("access_log", &self.access_log.is_some())
            .field("guard", &self.guard.is_some())
            .finish()
    }
}

/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Reading or writing access logs failed.
    #[error("access log {path}: {source}")]
    AccessLogIo {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

/// An error answer in the edge's style (`node/src/edge/error.rs`): the status
/// and a JSON body `{"error": "<code>", "message": "<what was wrong>"}`.
/// Counts `respawn_http_errors_total{status}` like the edge's own errors.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    metrics::counter!("respawn_http_errors_total", "status" => status.as_str().to_owned())
        .increment(1);
    let body = serde_json::to_vec(&ErrorBody {
        error: code,
        message,
    })
    .unwrap_or_default();
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn invoker_values_match_the_seed() {
        let all = [
            (Invoker::Backend, "backend"),
            (Invoker::Client, "client"),
            (Invoker::Intranet, "intranet"),
            (Invoker::Event, "event"),
            (Invoker::Task, "task"),
            (Invoker::Console, "console"),
        ];
        for (i, s) in all {
            assert_eq!(i.as_str(), s);
            assert_eq!(i.header_value(), s);
        }
        assert_eq!(Invoker::Event.default_timeout(), Duration::from_secs(3));
        assert_eq!(Invoker::Client.default_timeout(), Duration::from_secs(10));
        assert_eq!(Invoker::Task.default_timeout(), Duration::from_secs(10));
    }

    #[tokio::test]
    async fn json_error_has_the_edge_shape() {
        let resp = json_error(
            StatusCode::GATEWAY_TIMEOUT,
            "gateway_timeout",
            "slow \"vs\"",
        );
        assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": "gateway_timeout", "message": "slow \"vs\""})
        );
    }
}
