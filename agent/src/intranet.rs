//! The agent's intranet listener: how a virtual server instance calls
//! another VS of its title region (VS seed §8), and how its other plain
//! HTTP calls leave the host.
//!
//! Two forms of the same call, authenticated by the instance's token:
//!
//! - `ANY /i/<token>/<vs>/<path>` (origin form): the URL of
//!   `PGOS_VS_Intranet_Endpoint`;
//! - `ANY http://<vs>.<title region>.<title>.virtualserver.int/<path>`
//!   (absolute form, the listener being the instance's `http_proxy`), with
//!   `Proxy-Authorization: Basic` carrying the token as the password. The
//!   seed's intranet names.
//!
//! Both reach the VS with `Invoker: intranet`, through [`VsHost::call`]
//! (same title region only, reserved URIs refused). Any other host asked of
//! the proxy is an ordinary outbound call of the VS: it is forwarded
//! ([`respawn_proxy::Egress`]), except to the agent host's loopback for a
//! container, which could not reach it without the proxy.

use crate::vs::{rest_after, Caller, VsHost};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use axum::Router;
use base64::Engine;
use respawn_proxy::{json_error, Egress, EgressCall, Invoker};
use respawn_types::intranet::{classify_host, IntranetHost, INTRANET_PORT};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Forwarded outbound calls (to hosts that are not virtual servers) in
/// flight through one agent, bodies included; more are answered 503.
pub const MAX_EGRESS_CALLS: usize = 256;
/// Time for a forwarded call's response headers: the intranet's 10 s.
const EGRESS_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to resolve an outside host name.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// The realm of the proxy's `Proxy-Authenticate` challenge.
const REALM: &str = "Basic realm=\"respawn-intranet\"";

/// What the listener needs besides the VS host.
struct Listener {
    host: Arc<VsHost>,
    egress: Egress,
    permits: Arc<Semaphore>,
}

/// The listener's routes over `host`.
pub(crate) fn router(host: Arc<VsHost>) -> Router {
    let state = Arc::new(Listener {
        host,
        egress: Egress::new(),
        permits: Arc::new(Semaphore::new(MAX_EGRESS_CALLS)),
    });
    Router::new().fallback(entry).with_state(state)
}

async fn entry(State(l): State<Arc<Listener>>, req: Request) -> Response<Body> {
    if req.method() == Method::CONNECT {
        return json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "bad_request",
            "CONNECT (HTTPS through the proxy) is not supported: the intranet proxy is for plain HTTP; connect to HTTPS hosts directly",
        );
    }
    if req.uri().authority().is_some() {
        return proxied(&l, req).await;
    }
    let path = req.uri().path();
    let segs: Vec<&str> = path.splitn(5, '/').collect();
    match segs.as_slice() {
        ["", "i", token, vs, ..] if !token.is_empty() && !vs.is_empty() => {
            let (token, vs) = (token.to_string(), vs.to_string());
            let Some(caller) = l.host.caller(&token) else {
                return json_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "unknown intranet token (use PGOS_VS_Intranet_Endpoint as given)",
                );
            };
            let upstream = rest_after(req.uri(), 3);
            l.host
                .call(caller.region, &vs, Invoker::Intranet, upstream, req)
                .await
        }
        _ => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "call $PGOS_VS_Intranet_Endpoint/<vs>/<path>, or http://<vs>.<title region>.<title>.virtualserver.int/<path> through http_proxy",
        ),
    }
}

/// The token in `Proxy-Authorization: Basic base64(user:token)` (any user).
fn proxy_token(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::PROXY_AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (_, token) = text.split_once(':')?;
    Some(token.to_string())
}

fn proxy_auth_required(message: &str) -> Response<Body> {
    let mut r = json_error(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        "proxy_authentication_required",
        message,
    );
    r.headers_mut()
        .insert(header::PROXY_AUTHENTICATE, HeaderValue::from_static(REALM));
    r
}

/// An absolute-form request: the listener as the instance's `http_proxy`.
async fn proxied(l: &Listener, req: Request) -> Response<Body> {
    let Some(token) = proxy_token(req.headers()) else {
        return proxy_auth_required(
            "the intranet proxy needs Proxy-Authorization: Basic with the instance's token as password (use http_proxy as given)",
        );
    };
    let Some(caller) = l.host.caller(&token) else {
        return proxy_auth_required("unknown intranet token (use http_proxy as given)");
    };
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("http") {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!("only http:// URLs go through the intranet proxy, not {uri}"),
        );
    }
    let Some(authority) = uri.authority() else {
        return json_error(StatusCode::BAD_REQUEST, "bad_request", "no host in the URL");
    };
    let name = authority.host();
    let port = authority.port_u16();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    match classify_host(name, &caller.domain) {
        IntranetHost::Own(vs) => {
            if port.is_some_and(|p| p != INTRANET_PORT) {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &format!("intranet names answer on port {INTRANET_PORT} only: {authority}"),
                );
            }
            let vs = vs.to_string();
            l.host
                .call(caller.region, &vs, Invoker::Intranet, path, req)
                .await
        }
        IntranetHost::Foreign => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!(
                "no virtual server is named {name} in this title region: intranet names are <vs>.{}",
                caller.domain
            ),
        ),
        IntranetHost::Outside => {
            let target = (name.to_string(), port.unwrap_or(80));
            egress(l, &caller, target, authority.as_str(), path, req).await
        }
    }
}

/// Whether a container may not be sent to `ip`: the agent host's own
/// loopback (or the unspecified address, which means it).
fn host_only(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    ip.is_loopback() || ip.is_unspecified()
}

/// Forwards an ordinary outbound call of a VS.
async fn egress(
    l: &Listener,
    caller: &Caller,
    (name, port): (String, u16),
    authority: &str,
    path: String,
    req: Request,
) -> Response<Body> {
    let Ok(permit) = l.permits.clone().try_acquire_owned() else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            &format!("{MAX_EGRESS_CALLS} forwarded calls are already in flight on this host"),
        );
    };
    let lookup = tokio::time::timeout(
        RESOLVE_TIMEOUT,
        tokio::net::lookup_host((name.as_str(), port)),
    );
    let addrs: Vec<SocketAddr> = match lookup.await {
        Ok(Ok(a)) => a.collect(),
        Ok(Err(e)) => {
            return json_error(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                &format!("cannot resolve {name}: {e}"),
            )
        }
        Err(_) => {
            return json_error(
                StatusCode::GATEWAY_TIMEOUT,
                "gateway_timeout",
                &format!("resolving {name} took over {} s", RESOLVE_TIMEOUT.as_secs()),
            )
        }
    };
    let allowed = addrs
        .iter()
        .find(|a| !(caller.container && host_only(a.ip())))
        .copied();
    let Some(upstream) = allowed else {
        if addrs.is_empty() {
            return json_error(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                &format!("{name} has no address"),
            );
        }
        return json_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!("{authority} is the agent host's loopback, which containers may not reach through the intranet proxy"),
        );
    };
    let (Ok(host), Ok(path)) = (HeaderValue::from_str(authority), path.parse()) else {
        return json_error(StatusCode::BAD_REQUEST, "bad_request", "invalid URL");
    };
    let call = EgressCall {
        upstream,
        host,
        path,
        timeout: EGRESS_TIMEOUT,
        guard: Some(Box::new(permit)),
    };
    l.egress.forward(call, req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(s: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(s);
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {v}")).unwrap(),
        );
        h
    }

    #[test]
    fn the_token_is_the_basic_password() {
        assert_eq!(proxy_token(&basic("intranet:abc")).as_deref(), Some("abc"));
        assert_eq!(proxy_token(&basic(":abc")).as_deref(), Some("abc"));
        assert_eq!(proxy_token(&basic("abc")), None);
        assert_eq!(proxy_token(&HeaderMap::new()), None);
        let mut bearer = HeaderMap::new();
        bearer.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(proxy_token(&bearer), None);
    }

    #[test]
    fn containers_do_not_reach_the_hosts_loopback() {
        for ip in [
            "127.0.0.1",
            "127.8.9.1",
            "::1",
            "0.0.0.0",
            "::ffff:127.0.0.1",
        ] {
            assert!(host_only(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["172.17.0.1", "10.0.0.5", "2001:db8::1"] {
            assert!(!host_only(ip.parse().unwrap()), "{ip}");
        }
    }
}
