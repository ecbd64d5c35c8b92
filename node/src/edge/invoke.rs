//! The invoke routes of the edge, the data plane: a game backend's call
//! (`/virtualserver/invoke/...`, ServerTicket) and a game client's
//! (`/virtualserver/client/invoke/...`, PlayerTicket), checked here and
//! routed and proxied by [`crate::vs_routing::invoke`].

use super::context::{Edge, Region};
use super::error::{ApiError, ErrorBody};
use crate::vs_routing::{invoke, Call};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Response, StatusCode};
use axum::response::IntoResponse;
use respawn_proxy::upstream_path;
use respawn_proxy::{json_error, reserved_uri, Invoker};
use respawn_types::ticket::player as player_ticket;
use respawn_types::*;
use std::net::SocketAddr;
use std::time::Duration;

pub const INVOKE_PREFIX: &str = "/virtualserver/invoke";
const CLIENT_PREFIX: &str = "/virtualserver/client/invoke";
/// Seed §5.6: backend and client calls get 10 s.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub fn vs_name(s: &str) -> Result<VsName, ApiError> {
    VsName::parse(s).map_err(|e| ApiError::bad_request(format!("'{s}': {e}")))
}

/// The VS name segment of an invoke path (raw; validated by the caller).
fn name_in(path: &str, prefix: &str) -> String {
    path.strip_prefix(prefix)
        .and_then(|p| p.strip_prefix('/'))
        .map(|p| p.split('/').next().unwrap_or(""))
        .unwrap_or("")
        .to_string()
}

fn refuse_reserved(path: &str) -> Option<Response<Body>> {
    reserved_uri(path).map(|uri| {
        json_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!(
                "{uri} is reserved for PGOS and cannot be invoked by game backends or clients"
            ),
        )
    })
}

/// Invoke a virtual server from a game backend (seed §4.2): method, path
/// after the VS name, query, headers and body are proxied to an instance,
/// streamed both ways; the VS sees `Invoker: backend`.
#[utoipa::path(post, path = "/virtualserver/invoke/{vs_name}/{path}", tag = "Virtual servers",
    params(("vs_name" = String, Path, description = "virtual server name"),
           ("path" = String, Path, description = "any path, passed to the VS"),
           ("TitleId" = String, Header), ("TitleRegionId" = String, Header),
           ("SecretId" = String, Header), ("ServerTicket" = String, Header)),
    responses((status = 200, description = "whatever the VS answers (any status)"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "reserved URI"),
              (status = 404, body = ErrorBody, description = "unknown VS"),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody, description = "no instance can serve; the message says why"),
              (status = 504, body = ErrorBody, description = "the VS did not answer within 10 s")))]
pub async fn invoke_backend(
    State(edge): State<Edge>,
    Region(tr): Region,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response<Body> {
    let name = name_in(req.uri().path(), INVOKE_PREFIX);
    let vs = match vs_name(&name) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let upstream = upstream_path(req.uri(), INVOKE_PREFIX, &name);
    if let Some(r) = refuse_reserved(&upstream) {
        return r;
    }
    let call = Call {
        tr,
        vs,
        invoker: Invoker::Backend,
        player: None,
        client_ip: Some(peer.ip()),
        upstream_path: upstream,
        timeout: CALL_TIMEOUT,
    };
    invoke(&edge.server.cluster.consensus, &edge.server.vs, call, req).await
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::unauthorized(format!("missing header '{name}'")))
}

/// Invoke a virtual server from a game client (seed §4.7). The client
/// presents `TitleId`, `TitleRegionId` and a `PlayerTicket` minted by the
/// game backend (format in docs/virtual-servers.md); the VS sees `Invoker: client`,
/// `Playerid` and `Sessionid`. A VS that blocks client requests answers 403
/// without being reached.
#[utoipa::path(post, path = "/virtualserver/client/invoke/{vs_name}/{path}", tag = "Virtual servers",
    params(("vs_name" = String, Path), ("path" = String, Path),
           ("TitleId" = String, Header), ("TitleRegionId" = String, Header),
           ("PlayerTicket" = String, Header, description = "v1.<player_id>.<session_id>.<expires_at>.<hex HMAC-SHA256>")),
    responses((status = 200, description = "whatever the VS answers"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "client requests blocked, or reserved URI"),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
pub async fn invoke_client(
    State(edge): State<Edge>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response<Body> {
    let name = name_in(req.uri().path(), CLIENT_PREFIX);
    let checked = (|| {
        let vs = vs_name(&name)?;
        let h = req.headers();
        let title_id = header(h, "TitleId")?;
        let tr_raw = header(h, "TitleRegionId")?;
        let ticket = header(h, "PlayerTicket")?;
        let tr = TitleRegionId::parse(tr_raw)
            .map_err(|_| ApiError::unauthorized("unknown title region or title"))?;
        let now = now_millis() / 1000;
        let (player, blocked) = edge.server.cluster.consensus.read(|s| {
            let region = s
                .title_regions
                .get(&tr)
                .filter(|r| r.title_id.as_str() == title_id)
                .ok_or_else(|| ApiError::unauthorized("unknown title region or title"))?;
            let player = player_ticket::verify(&region.secret_key, title_id, tr_raw, ticket, now)
                .map_err(|e| ApiError::unauthorized(format!("PlayerTicket: {e}")))?;
            let blocked = s
                .virtual_server(&tr, &vs)
                .is_some_and(|v| v.spec.block_client_requests);
            Ok::<_, ApiError>((player, blocked))
        })?;
        if blocked {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                respawn_types::agent::ErrorCode::Forbidden,
                format!("virtual server '{vs}' does not accept requests from game clients"),
            ));
        }
        Ok((tr, vs, player))
    })();
    let (tr, vs, player) = match checked {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let upstream = upstream_path(req.uri(), CLIENT_PREFIX, &name);
    if let Some(r) = refuse_reserved(&upstream) {
        return r;
    }
    let call = Call {
        tr,
        vs,
        invoker: Invoker::Client,
        player: Some(player),
        client_ip: Some(peer.ip()),
        upstream_path: upstream,
        timeout: CALL_TIMEOUT,
    };
    invoke(&edge.server.cluster.consensus, &edge.server.vs, call, req).await
}
