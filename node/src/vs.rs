//! Virtual servers on a server node: the invoke edge's routing (which
//! instance serves a call, waiting for one that is starting), the load
//! board the autoscaler reads, and the ports the VS actors use to deliver
//! events and tasks.
//!
//! The path of an invocation: the edge authenticates the caller (backend
//! ServerTicket, or a client's PlayerTicket), refuses reserved URIs, finds
//! the VS in this node's applied state, picks its running instance with the
//! fewest requests in flight here (waiting, bounded, while one deploys), and
//! hands the request to [`respawn_proxy::Proxy::forward`], which streams it
//! to the instance's `host:port` and the answer back.

use crate::cluster::{Cluster, ClusterMsg};
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use futures::future::BoxFuture;
use respawn_actors::{Delivery, Site, VsPorts};
use respawn_consensus::PlacementState;
pub use respawn_proxy::upstream_path;
use respawn_proxy::{
    json_error, AccessLogStore, InvokeContext, Invoker, PlayerIdentity, Proxy, COLD_START_WAIT,
};
use respawn_types::agent::{ServerReply, VsUsageSample};
use respawn_types::*;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Peaks are kept over two windows of this length.
const LOAD_WINDOW: Duration = Duration::from_secs(2);
/// Remote load reports older than this are ignored.
const REMOTE_LOAD_TTL: Duration = Duration::from_secs(3);

type VsKey = (TitleRegionId, VsName);
/// A VS and its recent peak of in-flight requests.
pub type Peak = (TitleRegionId, VsName, u32);

#[derive(Default)]
struct VsLoad {
    in_flight: u32,
    peak: u32,
    prev_peak: u32,
    window_start: Option<Instant>,
}

impl VsLoad {
    fn roll(&mut self, now: Instant) {
        match self.window_start {
            Some(t) if now.duration_since(t) < LOAD_WINDOW => {}
            Some(t) if now.duration_since(t) < 2 * LOAD_WINDOW => {
                self.prev_peak = self.peak;
                self.peak = self.in_flight;
                self.window_start = Some(now);
            }
            _ => {
                self.prev_peak = self.in_flight;
                self.peak = self.in_flight;
                self.window_start = Some(now);
            }
        }
    }
    fn recent_peak(&mut self, now: Instant) -> u32 {
        self.roll(now);
        self.peak.max(self.prev_peak)
    }
}

/// In-flight requests per VS and per instance at this node's edge, and the
/// peaks other nodes reported (the leader's autoscaler sums them).
#[derive(Default)]
pub struct LoadBoard {
    vs: Mutex<HashMap<VsKey, VsLoad>>,
    instances: Mutex<HashMap<VsInstanceId, u32>>,
    remote: Mutex<HashMap<NodeId, (Instant, Vec<Peak>)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these short, panic-free critical sections cannot
    // leave the counters inconsistent in a way that matters: carry on.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts one request as in flight until dropped.
pub struct InFlight {
    board: Arc<LoadBoard>,
    key: VsKey,
    instance: Option<VsInstanceId>,
}

impl InFlight {
    fn assign(&mut self, instance: VsInstanceId) {
        *lock(&self.board.instances)
            .entry(instance.clone())
            .or_default() += 1;
        self.instance = Some(instance);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(l) = lock(&self.board.vs).get_mut(&self.key) {
            l.in_flight = l.in_flight.saturating_sub(1);
        }
        if let Some(i) = &self.instance {
            let mut m = lock(&self.board.instances);
            if let Some(n) = m.get_mut(i) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(i);
                }
            }
        }
    }
}

impl LoadBoard {
    pub fn enter(self: &Arc<Self>, key: VsKey) -> InFlight {
        let now = Instant::now();
        {
            let mut m = lock(&self.vs);
            let l = m.entry(key.clone()).or_default();
            l.roll(now);
            l.in_flight += 1;
            l.peak = l.peak.max(l.in_flight);
        }
        InFlight {
            board: self.clone(),
            key,
            instance: None,
        }
    }

    fn instance_load(&self, id: &VsInstanceId) -> u32 {
        lock(&self.instances).get(id).copied().unwrap_or(0)
    }

    /// This node's recent peaks.
    pub fn local_peaks(&self) -> Vec<(TitleRegionId, VsName, u32)> {
        let now = Instant::now();
        let mut m = lock(&self.vs);
        let mut out = Vec::new();
        m.retain(|(tr, vs), l| {
            let p = l.recent_peak(now);
            if p > 0 {
                out.push((tr.clone(), vs.clone(), p));
            }
            p > 0 || l.in_flight > 0
        });
        out
    }

    pub fn record_remote(&self, node: NodeId, peaks: Vec<(TitleRegionId, VsName, u32)>) {
        lock(&self.remote).insert(node, (Instant::now(), peaks));
    }

    /// Recent peaks summed over this node and the fresh remote reports.
    pub fn cluster_peaks(&self) -> HashMap<VsKey, u32> {
        let mut sum: HashMap<VsKey, u32> = HashMap::new();
        for (tr, vs, p) in self.local_peaks() {
            *sum.entry((tr, vs)).or_default() += p;
        }
        let mut remote = lock(&self.remote);
        remote.retain(|_, (t, _)| t.elapsed() < REMOTE_LOAD_TTL);
        for (_, peaks) in remote.values() {
            for (tr, vs, p) in peaks {
                *sum.entry((tr.clone(), vs.clone())).or_default() += p;
            }
        }
        sum
    }
}

/// The VS machinery a server node shares between its edge, its links and its actors.
pub struct VsHub {
    pub proxy: Proxy,
    pub access_logs: AccessLogStore,
    pub load: Arc<LoadBoard>,
    pub site: Site,
}

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
fn pick(
    s: &PlacementState,
    tr: &TitleRegionId,
    vs: &VsName,
    path: &str,
    board: &LoadBoard,
) -> Pick {
    let Some(v) = s.virtual_server(tr, vs) else {
        return Pick::Fail(RouteError::UnknownVs(vs.clone()));
    };
    if v.desired == VsDesired::Stopped {
        return Pick::Fail(RouteError::Unavailable(format!(
            "virtual server '{vs}' is stopped; start it to serve requests"
        )));
    }
    let mut best: Option<(u32, &VsInstance, SocketAddr)> = None;
    let mut deploying = 0;
    let mut abnormal = Vec::new();
    let mut live = 0;
    for i in s.vs_instances_of(tr, vs) {
        match i.status {
            VsInstanceStatus::Running => {
                live += 1;
                let (Some(port), Ok(ip)) = (i.port, i.ip.parse::<IpAddr>()) else {
                    continue;
                };
                let addr = SocketAddr::new(ip, port);
                let load = board.instance_load(&i.id);
                if best.as_ref().is_none_or(|(l, _, _)| load < *l) {
                    best = Some((load, i, addr));
                }
            }
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
    if let Some((_, i, addr)) = best {
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
    cluster: &Cluster,
    tr: &TitleRegionId,
    vs: &VsName,
    path: &str,
    wait: Duration,
) -> Result<Route, RouteError> {
    let deadline = Instant::now() + wait;
    let mut delay = Duration::from_millis(5);
    loop {
        let board = &cluster.vs.load;
        match cluster.consensus.read(|s| pick(s, tr, vs, path, board)) {
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
pub async fn invoke(cluster: &Cluster, call: Call, req: Request<Body>) -> Response<Body> {
    let hub = cluster.vs.clone();
    // Counted from arrival: calls waiting for an instance drive scale-up too.
    let mut guard = hub.load.enter((call.tr.clone(), call.vs.clone()));
    let started = Instant::now();
    let path = call.upstream_path.split('?').next().unwrap_or("/");
    let route = match route(
        cluster,
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
pub fn resolve_for_agent(cluster: &Cluster, tr: &TitleRegionId, vs: &VsName) -> ServerReply {
    cluster.consensus.read(|s| {
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

/// An agent's usage report becomes gauges (this node's /metrics).
pub fn record_usage(cluster: &Cluster, host: &HostId, samples: &[VsUsageSample]) {
    for s in samples.iter().take(4096) {
        let Some((tr, vs)) = cluster.consensus.read(|st| {
            st.vs_instances
                .get(&s.instance_id)
                .filter(|i| &i.host_id == host)
                .map(|i| (i.title_region_id.to_string(), i.vs.to_string()))
        }) else {
            continue;
        };
        let id = s.instance_id.to_string();
        metrics::gauge!("respawn_vs_instance_cpu_millicores", "title_region" => tr.clone(), "vs" => vs.clone(), "instance" => id.clone())
            .set(f64::from(s.cpu_millicores));
        metrics::gauge!("respawn_vs_instance_memory_bytes", "title_region" => tr, "vs" => vs, "instance" => id)
            .set(s.memory_bytes as f64);
    }
}

/// Instance counts per VS and status, as gauges (refreshed by [`report_load`]).
fn record_instance_counts(cluster: &Cluster) {
    let counts = cluster.consensus.read(|s| {
        let mut m: HashMap<(String, String), [u32; 4]> = HashMap::new();
        for (tr, servers) in &s.virtual_servers {
            for name in servers.keys() {
                m.insert((tr.to_string(), name.to_string()), [0; 4]);
            }
        }
        for i in s.vs_instances.values() {
            let e = m
                .entry((i.title_region_id.to_string(), i.vs.to_string()))
                .or_insert([0; 4]);
            e[i.status as usize] += 1;
        }
        m
    });
    for ((tr, vs), c) in counts {
        for (status, n) in ["deploying", "running", "abnormal", "stopping"]
            .iter()
            .zip(c)
        {
            metrics::gauge!("respawn_vs_instances", "title_region" => tr.clone(), "vs" => vs.clone(), "status" => *status)
                .set(f64::from(n));
        }
    }
}

/// Every second: followers send their edge's peaks to the leader (its
/// autoscaler sums them); every node refreshes its instance gauges.
pub async fn report_load(cluster: Cluster, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        record_instance_counts(&cluster);
        // Histograms keep their samples until upkeep folds them in: without
        // this, memory grows with every call while nobody scrapes /metrics.
        crate::edge::prometheus().run_upkeep();
        if cluster.consensus.is_leader() {
            continue;
        }
        let peaks = cluster.vs.load.local_peaks();
        if peaks.is_empty() {
            continue;
        }
        if let Some((leader, _)) = cluster.consensus.leader() {
            let msg = ClusterMsg::VsLoad {
                node: cluster.node_id(),
                peaks,
            };
            if let Err(e) = cluster.ask_node(leader, &msg).await {
                tracing::debug!(error = %e, "could not report edge load to the leader");
            }
        }
    }
}

/// The VS actors' ports on a server node.
pub struct ClusterVsPorts(pub Cluster);

impl VsPorts for ClusterVsPorts {
    fn load(&self) -> HashMap<(TitleRegionId, VsName), u32> {
        self.0.vs.load.cluster_peaks()
    }

    fn deliver(
        &self,
        tr: &TitleRegionId,
        vs: &VsName,
        path: &'static str,
        invoker: &'static str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Delivery> {
        let cluster = self.0.clone();
        let call = Call {
            tr: tr.clone(),
            vs: vs.clone(),
            invoker: if invoker == "task" {
                Invoker::Task
            } else {
                Invoker::Event
            },
            player: None,
            client_ip: None,
            upstream_path: path.to_string(),
            timeout,
        };
        Box::pin(async move {
            let started = Instant::now();
            let req = Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from(body));
            let req = match req {
                Ok(r) => r,
                Err(e) => {
                    return Delivery {
                        status: None,
                        response: e.to_string(),
                        latency_ms: 0,
                    }
                }
            };
            let res = invoke(&cluster, call, req).await;
            let status = res.status().as_u16();
            // Read at most 1 KiB of the answer for the trigger log.
            let body = axum::body::to_bytes(res.into_body(), 64 * 1024)
                .await
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(1024)]).into_owned())
                .unwrap_or_default();
            Delivery {
                status: Some(status),
                response: body,
                latency_ms: started.elapsed().as_millis() as u64,
            }
        })
    }

    fn site(&self) -> Site {
        self.0.vs.site.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_board_counts_in_flight_and_keeps_peaks() {
        let b = Arc::new(LoadBoard::default());
        let key = (
            TitleRegionId::new_unchecked("tr"),
            VsName::parse("vs").unwrap(),
        );
        let g1 = b.enter(key.clone());
        let mut g2 = b.enter(key.clone());
        g2.assign(VsInstanceId::new_unchecked("vsi-1"));
        assert_eq!(b.instance_load(&VsInstanceId::new_unchecked("vsi-1")), 1);
        drop(g1);
        drop(g2);
        assert_eq!(b.instance_load(&VsInstanceId::new_unchecked("vsi-1")), 0);
        // The peak of the window outlives the requests.
        assert_eq!(b.cluster_peaks().get(&key), Some(&2));
        b.record_remote(7, vec![(key.0.clone(), key.1.clone(), 5)]);
        assert_eq!(b.cluster_peaks().get(&key), Some(&7));
    }
}
