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
//!
//! Two rules keep a burst from piling onto one instance and a crash from
//! failing calls (Knative's activator does the same):
//!
//! - **Per-instance bound.** While more instances may come (fewer RUNNING
//!   than `max_instances`), a call goes only to an instance with fewer than
//!   `target_concurrency` of this node's calls in flight; otherwise it waits
//!   at the edge (it already counts for the autoscaler) and goes to
//!   whichever instance frees a slot or comes up first. After
//!   [`QUEUE_WAIT`] (or half the call's wait) it goes to the least loaded
//!   instance anyway, so queueing never fails a call that would have been
//!   served.
//! - **Unserved calls are retried.** A call whose body is small (at most
//!   [`REPLAY_BODY_LIMIT`], buffered) and whose instance refuses the
//!   connection (it just crashed; nothing was sent) — or, for an idempotent
//!   method, closes it without answering — waits for a RUNNING instance
//!   again within its wait limit and is sent there.

use crate::vs_hub::{InFlight, LoadBoard, VsHub};
use axum::body::{Body, Bytes};
use axum::http::{header, request, Request, Response, StatusCode};
use http_body_util::BodyExt;
use respawn_consensus::Consensus;
use respawn_proxy::{
    json_error, pick_instance, InvokeContext, Invoker, NotServed, PlayerIdentity, COLD_START_WAIT,
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

/// Longest a call waits at the edge for a free slot under the per-instance
/// bound before it goes to the least loaded instance anyway.
pub const QUEUE_WAIT: Duration = Duration::from_secs(5);
/// While no instance is deploying, how long a queued call waits for the
/// autoscaler to add one (it reacts within about 1.5 s).
const SCALE_UP_GRACE: Duration = Duration::from_secs(2);
/// Largest request body buffered so that a refused connection can be
/// retried on another instance; larger or unsized bodies stream, untried.
pub const REPLAY_BODY_LIMIT: usize = 64 * 1024;
/// Shortest time between two looks of a waiting call at the state, when
/// it is woken by applied entries (they may come by the hundred per second).
const MIN_LOOK_EVERY: Duration = Duration::from_millis(1);
/// How long an instance that refused a connection is passed over.
const REFUSED_AVOID: Duration = Duration::from_millis(200);

enum Pick {
    /// Send it there, counted against `bound` calls in flight.
    Ready(Route, u32),
    /// Worth waiting: an instance is deploying, one is about to be placed,
    /// or every running one is at its bound while more may come.
    Wait(String),
    Fail(RouteError),
}

/// Where a call is in its wait, for [`pick`].
#[derive(Clone, Copy)]
struct Queue {
    /// It may still wait for a slot under the per-instance bound.
    bounded: bool,
    /// It may still wait for the autoscaler to add an instance.
    in_grace: bool,
}

/// `path` is the call's path without the query (for per-URL metrics);
/// instances at `avoid` refused a connection a moment ago.
fn pick(
    s: &ClusterState,
    tr: &TitleRegionId,
    vs: &VsName,
    path: &str,
    board: &LoadBoard,
    avoid: &[SocketAddr],
    queue: Queue,
) -> Pick {
    let Some(v) = s.virtual_server(tr, vs) else {
        return Pick::Fail(RouteError::UnknownVs(vs.clone()));
    };
    if v.desired == VsDesired::Stopped {
        return Pick::Fail(RouteError::Unavailable(format!(
            "virtual server '{vs}' is stopped; start it to serve requests"
        )));
    }
    let running: Vec<_> = s
        .vs_instances_of(tr, vs)
        .filter(|i| i.status == VsInstanceStatus::Running)
        .filter_map(|i| {
            let (Some(port), Ok(ip)) = (i.port, i.ip.parse::<IpAddr>()) else {
                return None;
            };
            Some(((i, SocketAddr::new(ip, port)), board.instance_load(&i.id)))
        })
        .collect();
    let deploying_now = s
        .vs_instances_of(tr, vs)
        .any(|i| i.status == VsInstanceStatus::Deploying);
    let more_may_come =
        (running.len() as u32) < v.spec.max_instances && (deploying_now || queue.in_grace);
    let bound = if queue.bounded && more_may_come {
        v.spec.target_concurrency.max(1)
    } else {
        u32::MAX
    };
    let usable = running
        .iter()
        .filter(|((_, addr), _)| !avoid.contains(addr))
        .map(|(c, load)| (*c, *load));
    if let Some((i, addr)) = pick_instance(usable, 0) {
        if board.instance_load(&i.id) >= bound {
            return Pick::Wait(format!(
                "every running instance of '{vs}' has {bound} calls in flight from this node"
            ));
        }
        return Pick::Ready(
            Route {
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
            },
            bound,
        );
    }
    if !running.is_empty() {
        return Pick::Wait(format!(
            "the running instance of '{vs}' refused the connection (crashed?); waiting for it to come back"
        ));
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

/// The time limits of one call's routing.
#[derive(Clone, Copy)]
struct Wait {
    arrived: Instant,
    /// No instance by then: 503.
    deadline: Instant,
    /// Queued under the bound until then, then sent anyway.
    queue_until: Instant,
}

impl Wait {
    fn new(arrived: Instant, wait: Duration) -> Wait {
        Wait {
            arrived,
            deadline: arrived + wait,
            queue_until: arrived + QUEUE_WAIT.min(wait / 2),
        }
    }
}

/// Finds an instance for a call and counts the call against it in
/// `guard`, waiting until `w.deadline` for one to be running (and free).
async fn route(
    consensus: &Consensus,
    board: &LoadBoard,
    guard: &mut InFlight,
    (tr, vs, path): (&TitleRegionId, &VsName, &str),
    w: Wait,
    avoid: &[(SocketAddr, Instant)],
) -> Result<Route, RouteError> {
    let mut delay = Duration::from_millis(5);
    // Applied-state changes wake a waiting call at once (an instance became
    // RUNNING); the delay is the fallback for what the state does not show
    // (a slot freed under the per-instance bound, an avoided address).
    let mut metrics = consensus.metrics();
    loop {
        // Taken before the read: an entry applied after it wakes the wait.
        let seen = metrics.borrow_and_update().last_applied;
        let now = Instant::now();
        let avoid_now: Vec<SocketAddr> = avoid
            .iter()
            .filter(|(_, until)| *until > now)
            .map(|(a, _)| *a)
            .collect();
        let queue = Queue {
            bounded: now < w.queue_until,
            in_grace: now < w.arrived + SCALE_UP_GRACE,
        };
        let why = match consensus.read(|s| pick(s, tr, vs, path, board, &avoid_now, queue)) {
            Pick::Ready(r, bound) => {
                if guard.try_assign(r.instance.clone(), bound) {
                    return Ok(r);
                }
                // Another call took the last slot meanwhile.
                delay = Duration::from_millis(5);
                "every running instance is busy".to_string()
            }
            Pick::Fail(e) => return Err(e),
            Pick::Wait(why) => why,
        };
        if Instant::now() + delay > w.deadline {
            return Err(RouteError::Unavailable(format!(
                "no instance of virtual server '{vs}' can serve: {why}"
            )));
        }
        let applied = async {
            if metrics.wait_for(|m| m.last_applied != seen).await.is_err() {
                // The consensus is shutting down: no more changes, sleep on.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = applied => {
                // However often entries are applied, a waiting call looks
                // at most once per MIN_LOOK_EVERY.
                tokio::time::sleep_until((now + MIN_LOOK_EVERY).into()).await;
            }
        }
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

/// A request body kept for another attempt, or streamed once.
enum Payload {
    Replay(Bytes),
    Stream(Option<Body>),
}

impl Payload {
    /// Buffers a body known to be at most [`REPLAY_BODY_LIMIT`] bytes (by
    /// `Content-Length`, or absent with no `Transfer-Encoding`).
    async fn of(parts: &request::Parts, body: Body) -> Result<Payload, Response<Body>> {
        let length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let chunked = parts.headers.contains_key(header::TRANSFER_ENCODING);
        let small = match length {
            Some(n) => n <= REPLAY_BODY_LIMIT && !chunked,
            None => !chunked,
        };
        if !small {
            return Ok(Payload::Stream(Some(body)));
        }
        match http_body_util::Limited::new(body, REPLAY_BODY_LIMIT)
            .collect()
            .await
        {
            Ok(c) => Ok(Payload::Replay(c.to_bytes())),
            Err(e) => Err(json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("the request body could not be read: {e}"),
            )),
        }
    }

    /// The body of the next attempt; `None` once a streamed body is spent.
    fn next(&mut self) -> Option<Body> {
        match self {
            Payload::Replay(b) => Some(Body::from(b.clone())),
            Payload::Stream(b) => b.take(),
        }
    }

    fn replayable(&self) -> bool {
        matches!(self, Payload::Replay(_))
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
    let key = (call.tr.clone(), call.vs.clone());
    // Counted from arrival: calls waiting for an instance drive scale-up too.
    let mut guard = Some(hub.load.enter(key.clone()));
    let started = Instant::now();
    let w = Wait::new(started, COLD_START_WAIT.min(call.timeout));
    let path = call.upstream_path.split('?').next().unwrap_or("/");
    let (parts, body) = req.into_parts();
    let mut payload = match Payload::of(&parts, body).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let mut avoid: Vec<(SocketAddr, Instant)> = Vec::new();
    loop {
        let mut g = guard.take().unwrap_or_else(|| hub.load.enter(key.clone()));
        let route = match route(
            consensus,
            &hub.load,
            &mut g,
            (&call.tr, &call.vs, path),
            w,
            &avoid,
        )
        .await
        {
            Ok(r) => r,
            Err(e) => return e.response(),
        };
        let Some(body) = payload.next() else {
            // Unreachable: a streamed body gets one attempt only.
            return json_error(StatusCode::BAD_GATEWAY, "bad_gateway", "no attempt left");
        };
        let mut ctx = InvokeContext::new(
            route.title_id,
            call.tr.as_str(),
            call.vs.as_str(),
            call.invoker,
            call.upstream_path.clone(),
        );
        ctx.player = call.player.clone();
        ctx.client_ip = call.client_ip;
        // The time spent waiting for an instance counts against the limit.
        let waited = started.elapsed();
        ctx.timeout = if waited > Duration::from_millis(100) {
            call.timeout.saturating_sub(waited)
        } else {
            call.timeout
        };
        ctx.metric_url = route.metric_url;
        if route.access_log {
            ctx.access_log = Some(hub.access_logs.for_vs(call.tr.as_str(), call.vs.as_str()));
        }
        ctx.retry_unserved = payload.replayable() && Instant::now() < w.deadline;
        ctx.guard = Some(Box::new(g));
        let resp = hub
            .proxy
            .forward_parts(route.upstream, &parts, body, ctx)
            .await;
        if resp.extensions().get::<NotServed>().is_none() {
            return resp;
        }
        tracing::debug!(vs = %call.vs, upstream = %route.upstream, "instance did not serve the call (refused or closed); routing it again");
        avoid.retain(|(_, until)| *until > Instant::now());
        avoid.push((route.upstream, Instant::now() + REFUSED_AVOID));
    }
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
