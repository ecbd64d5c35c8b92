//! Browser access to a virtual server (the VS seed's "browse a VS from the
//! portal"): a signed-in operator who may see a VS opens
//! `/console/virtual_servers/{tr}/{name}/open` and is sent to
//! `/console/browse/{tr}/{name}/{token}/`, where every request (any method,
//! any path below) is proxied to the VS through the invoke path with
//! `Invoker: console`, so the VS can tell these requests apart.
//!
//! The token (see `Signer::browse_token`) opens that one VS until the
//! session's expiry and nothing else. The VS's pages are served with a
//! `sandbox` content security policy (an opaque origin): its scripts cannot
//! read console pages or act with the operator's session, which a VS of
//! one title region must never do to an operator who sees them all. The
//! console's cookie is never passed to the VS, and the VS cannot set it.
//! Reserved `/pgos_*` URIs are refused, as for every caller but the
//! platform.

use super::auth::Me;
use super::vs::region;
use super::{ConsoleState, PageError};
use crate::edge::admin::Admin;
use crate::edge::vs_admin;
use crate::vs_routing::{invoke, Call};
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use respawn_console::session::COOKIE;
use respawn_proxy::{reserved_uri, upstream_path, Invoker};
use respawn_types::{TitleRegionId, VsName};
use std::net::SocketAddr;
use std::time::Duration;

/// Where the proxied pages live.
pub const BROWSE_PREFIX: &str = "/console/browse";
/// What the VS's pages may do: run scripts, submit forms, open popups and
/// downloads, in an opaque origin (no `allow-same-origin`).
const SANDBOX: &str = "sandbox allow-scripts allow-forms allow-popups allow-downloads";
/// As for a backend call (seed §5.6).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /console/virtual_servers/{tr}/{name}/open`: sends the browser to
/// the VS's proxied home page.
pub async fn open(
    State(c): State<ConsoleState>,
    me: Me,
    Path((tr, name)): Path<(String, String)>,
) -> Result<Response, PageError> {
    region(&me, &tr, &name)?;
    let _exists = vs_admin::get_one(
        State(c.edge.clone()),
        Admin,
        Path((tr.clone(), name.clone())),
    )
    .await
    .map_err(|_| PageError::NotFound(format!("virtual server '{name}' not found")))?;
    let token = c.signer.browse_token(&tr, &name, me.session.exp);
    // tr and name were validated above: nothing to escape.
    Ok(Redirect::to(&format!("{BROWSE_PREFIX}/{tr}/{name}/{token}/")).into_response())
}

/// `tr`, `name` and `token` of a browse path.
fn parts(path: &str) -> Option<(&str, &str, &str)> {
    let rest = path.strip_prefix(BROWSE_PREFIX)?.strip_prefix('/')?;
    let mut it = rest.splitn(4, '/');
    Some((it.next()?, it.next()?, it.next()?))
}

/// The `Cookie` header without the console's session cookie.
fn without_session(h: &str) -> String {
    h.split(';')
        .map(str::trim)
        .filter(|kv| kv.split_once('=').is_none_or(|(k, _)| k.trim() != COOKIE))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `ANY /console/browse/{tr}/{name}/{token}/{*path}`: one request to the VS.
pub async fn browse(
    State(c): State<ConsoleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
) -> Response {
    let now = respawn_types::now_millis() / 1000;
    let path = req.uri().path().to_string();
    let expired = || {
        PageError::NotFound(
            "this browsing link is not valid (or has expired): open the virtual server again from its console page".into(),
        )
        .into_response()
    };
    let Some((tr, name, token)) = parts(&path) else {
        return expired();
    };
    if !c.signer.check_browse(tr, name, token, now) {
        return expired();
    }
    let (Ok(tr_id), Ok(vs)) = (TitleRegionId::parse(tr), VsName::parse(name)) else {
        return expired();
    };
    let upstream = upstream_path(req.uri(), &format!("{BROWSE_PREFIX}/{tr}/{name}"), token);
    if let Some(uri) = reserved_uri(&upstream) {
        return PageError::Api(crate::edge::error::ApiError::new(
            StatusCode::FORBIDDEN,
            respawn_types::agent::ErrorCode::Forbidden,
            format!("{uri} is reserved for PGOS and cannot be browsed"),
        ))
        .into_response();
    }
    let cookies: Vec<String> = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(without_session)
        .filter(|v| !v.is_empty())
        .collect();
    req.headers_mut().remove(header::COOKIE);
    for v in cookies {
        if let Ok(v) = HeaderValue::from_str(&v) {
            req.headers_mut().append(header::COOKIE, v);
        }
    }
    let call = Call {
        tr: tr_id,
        vs,
        invoker: Invoker::Console,
        player: None,
        client_ip: Some(peer.ip()),
        upstream_path: upstream,
        timeout: CALL_TIMEOUT,
    };
    let res: Response<Body> = invoke(
        &c.edge.server.cluster.consensus,
        &c.edge.server.vs,
        call,
        req,
    )
    .await;
    let (mut parts, body) = res.into_parts();
    let kept: Vec<HeaderValue> = parts
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.split_once('='))
                .is_none_or(|(k, _)| k.trim() != COOKIE)
        })
        .cloned()
        .collect();
    parts.headers.remove(header::SET_COOKIE);
    for v in kept {
        parts.headers.append(header::SET_COOKIE, v);
    }
    parts.headers.append(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(SANDBOX),
    );
    parts.headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browse_paths_split_and_the_session_cookie_is_dropped() {
        assert_eq!(
            parts("/console/browse/tr-1/api/9-ab/x/y"),
            Some(("tr-1", "api", "9-ab"))
        );
        assert_eq!(
            parts("/console/browse/tr-1/api/9-ab"),
            Some(("tr-1", "api", "9-ab"))
        );
        assert_eq!(parts("/console/browse/tr-1/api"), None);
        assert_eq!(without_session("a=1; respawn_console=x.y; b=2"), "a=1; b=2");
        assert_eq!(without_session("respawn_console=x"), "");
    }
}
