//! Routing a call to a virtual server on a server node: which running
//! instance serves it (the least loaded at this node's edge, by
//! [`respawn_proxy::pick_instance`]), waiting, bounded, for one that is
//! starting; and forwarding it ([`invoke`]). Also the running instances an
//! agent asks for ([`resolve_for_agent`]).
//!
//! The path of an invocation: the edge authenticates the caller (backend
//! ServerTicket, or a client's PlayerTicket), refuses reserved URIs, finds
//! the VS in this node's applied state, picks its running instance with the
//! fewest requests in flight here (waiting, bounded, while one deploys), and
//! hands the request to [`respawn_proxy::Proxy::forward`], which streams it
//! to the instance's `host:port` and the answer back.

use crate::vs_hub::{LoadBoard, VsHub};
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use respawn_consensus::Consensus;
use respawn_proxy::{
    json_error, pick_instance, InvokeContext, Invoker, PlayerIdentity, COLD_START_WAIT,
};
use respawn_state::ClusterState;
use respawn_types::agent::ServerReply;
use respawn_types::*;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Why a call cannot be routed.
#[derive(Debug)]
pub enum RouteError {
    UnknownVs(VsName),
    Unavailable(String),
}

impl RouteError {
    pub fn response(&self) -> Response<Body> {
        match self {
            RouteError::UnknownVs(n) => json_error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("virtual server '{n}' not found in this title region"),
            ),
            RouteError::Unavailable(m) => {
                json_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
            }
        }
    }
}

/// What the edge needs to know about a VS to route one call.
pub struct Route {
    pub title_id: String,
    pub upstream: SocketAddr,
    pub instance: VsInstanceId,
    /// The VS keeps an access log.
    pub access_log: bool,
    /// The call's path, when the VS whitelists it for per-URL metrics.
    pub metric_url: Option<String>,
}

enum Pick {
    Ready(Route),
    /// Worth waiting: an instance is deploying, or one is about to be placed.
    Wait(String),
    Fail(RouteError),
}

/// `path` is the call's path without the query (for per-URL metrics).
fn pick(s: &ClusterState, tr: &TitleRegionId, vs: &VsName, path: &str, board: &LoadBoard) -> Pick {
    let Some(v) = s.virtual_server(tr, vs) else {
        return Pick::Fail(RouteError::UnknownVs(vs.clone()));
    };
    if v.desired == VsDesired::Stopped {
        return Pick::Fail(RouteError::Unavailable(format!(
            "virtual server '{vs}' is stopped; start it to serve requests"
        )));
    }
    let running = s
        .vs_instances_of(tr, vs)
        .filter(|i| i.status == VsInstanceStatus::Running)
        .filter_map(|i| {
            let (Some(port), Ok(ip)) = (i.port, i.ip.parse::<IpAddr>()) else {
                return None;
            };
            Some(((i, SocketAddr::new(ip, port)), board.instance_load(&i.id)))
        });
    if let Some((i, addr)) = pick_instance(running, 0) {
        return Pick::Ready(Route {
            title_id: s
                .title_regions
                .get(tr)
                .map(|t| t.title_id.to_string())
                .unwrap_or_default(),
            upstream: addr,
            instance: i.id.clone(),
            access_log: v.spec.access_log,
            metric_url: v
                .spec
                .metric_urls
                .iter()
                .any(|u| u == path)
                .then(|| path.to_string()),
        });
    }
    let mut deploying = 0;
    let mut abnormal = Vec::new();
    let mut live = 0;
    for i in s.vs_instances_of(tr, vs) {
        match i.status {
            VsInstanceStatus::Running => live += 1,
            VsInstanceStatus::Deploying => {
                live += 1;
                deploying += 1;
            }
            VsInstanceStatus::Abnormal => {
                live += 1;
                abnormal.push(format!(
                    "instance {} is ABNORMAL ({}): {}",
                    i.id,
                    i.reason.as_deref().unwrap_or("unknown"),
                    i.detail.as_deref().unwrap_or("")
                ));
            }
            VsInstanceStatus::Stopping => {}
        }
    }
    if deploying > 0 || live == 0 {
        return Pick::Wait(if deploying > 0 {
            format!("virtual server '{vs}' is still deploying")
        } else {
            format!("virtual server '{vs}' has no instance yet (no agent can run it?)")
        });
    }
    // Abnormal instances may come back (a crashed one is relaunched): wait too,
    // but say why if the wait runs out.
    Pick::Wait(abnormal.join("; "))
}

/// Finds an instance for a call, waiting up to `wait` for one to be running.
pub async fn route(
    consensus: &Consensus,
    board: &LoadBoard,
    tr: &TitleRegionId,
    vs: &VsName,
    path: &str,
    wait: Duration,
) -> Result<Route, RouteError> {
    let deadline = Instant::now() + wait;
    let mut delay = Duration::from_millis(5);
    loop {
        match consensus.read(|s| pick(s, tr, vs, path, board)) {
            Pick::Ready(r) => return Ok(r),
            Pick::Fail(e) => return Err(e),
            Pick::Wait(why) => {
                if Instant::now() + delay > deadline {
                    return Err(RouteError::Unavailable(format!(
                        "no instance of virtual server '{vs}' can serve: {why}"
                    )));
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(50));
            }
        }
    }
}

/// Everything about one call that the edge decided.
pub struct Call {
    pub tr: TitleRegionId,
    pub vs: VsName,
    pub invoker: Invoker,
    pub player: Option<PlayerIdentity>,
    pub client_ip: Option<IpAddr>,
    /// Path and query for the VS.
    pub upstream_path: String,
    pub timeout: Duration,
}

/// Routes and forwards one call; every outcome is an HTTP answer.
pub async fn invoke(
    consensus: &Consensus,
    hub: &VsHub,
    call: Call,
    req: Request<Body>,
) -> Response<Body> {
    // Counted from arrival: calls waiting for an instance drive scale-up too.
    let mut guard = hub.load.enter((call.tr.clone(), call.vs.clone()));
    let started = Instant::now();
    let path = call.upstream_path.split('?').next().unwrap_or("/");
    let route = match route(
        consensus,
        &hub.load,
        &call.tr,
        &call.vs,
        path,
        COLD_START_WAIT.min(call.timeout),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return e.response(),
    };
    guard.assign(route.instance.clone());
    let mut ctx = InvokeContext::new(
        route.title_id,
        call.tr.as_str(),
        call.vs.as_str(),
        call.invoker,
        call.upstream_path,
    );
    ctx.player = call.player;
    ctx.client_ip = call.client_ip;
    // The time spent waiting for a starting instance counts against the limit.
    let waited = started.elapsed();
    if waited > Duration::from_millis(100) {
        ctx.timeout = call.timeout.saturating_sub(waited);
    } else {
        ctx.timeout = call.timeout;
    }
    ctx.metric_url = route.metric_url;
    if route.access_log {
        ctx.access_log = Some(hub.access_logs.for_vs(call.tr.as_str(), call.vs.as_str()));
    }
    ctx.guard = Some(Box::new(guard));
    hub.proxy.forward(route.upstream, req, ctx).await
}

/// Answers an agent's ResolveVs: the running instances of a VS.
pub fn resolve_for_agent(consensus: &Consensus, tr: &TitleRegionId, vs: &VsName) -> ServerReply {
    consensus.read(|s| {
        let title_id = s
            .title_regions
            .get(tr)
            .map(|t| t.title_id.to_string())
            .unwrap_or_default();
        let Some(v) = s.virtual_server(tr, vs) else {
            return ServerReply::VsEndpoints {
                exists: false,
                running: false,
                title_id,
                endpoints: vec![],
                reason: format!("virtual server '{vs}' not found in this title region"),
            };
        };
        let endpoints: Vec<String> = s
            .vs_instances_of(tr, vs)
            .filter(|i| i.status == VsInstanceStatus::Running)
            .filter_map(|i| i.port.map(|p| format!("{}:{p}", i.ip)))
            .collect();
        let reason = if v.desired == VsDesired::Stopped {
            format!("virtual server '{vs}' is stopped")
        } else if endpoints.is_empty() {
            format!("virtual server '{vs}' has no running instance yet")
        } else {
            String::new()
        };
        ServerReply::VsEndpoints {
            exists: true,
            running: v.desired == VsDesired::Running,
            title_id,
            endpoints,
            reason,
        }
    })
}
