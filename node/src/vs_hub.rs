//! The virtual-server machinery of a server node ([`VsHub`]): the proxy,
//! the access logs and the load board ([`LoadBoard`]: requests in flight at
//! this node's edge, per VS and per instance, and the peaks the other nodes
//! report, which the leader's autoscaler sums); and what is reported of
//! it: [`report_load`] sends this node's peaks to the leader, agents'
//! usage and instance counts become gauges.

use crate::cluster::wire::ClusterMsg;
use crate::cluster::Cluster;
use metrics_exporter_prometheus::PrometheusHandle;
use respawn_actors::Site;
use respawn_consensus::Consensus;
use respawn_proxy::{AccessLogStore, Proxy};
use respawn_types::agent::VsUsageSample;
use respawn_types::*;
use std::collections::HashMap;
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
    #[cfg(test)]
    pub(crate) fn assign(&mut self, instance: VsInstanceId) {
        let assigned = self.try_assign(instance, u32::MAX);
        debug_assert!(assigned);
    }

    /// Counts this call against `instance` if fewer than `bound` of this
    /// node's calls are in flight there (checked and counted under one
    /// lock, so concurrent calls cannot all take the last slot). A previous
    /// assignment is released first.
    pub(crate) fn try_assign(&mut self, instance: VsInstanceId, bound: u32) -> bool {
        let mut m = lock(&self.board.instances);
        if let Some(old) = self.instance.take() {
            if let Some(n) = m.get_mut(&old) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&old);
                }
            }
        }
        let n = m.entry(instance.clone()).or_default();
        if *n >= bound {
            if *n == 0 {
                m.remove(&instance);
            }
            return false;
        }
        *n += 1;
        self.instance = Some(instance);
        true
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
            // Look up before inserting: no key clone on the usual path.
            if !m.contains_key(&key) {
                m.insert(key.clone(), VsLoad::default());
            }
            let Some(l) = m.get_mut(&key) else {
                unreachable!("inserted just above, under the same lock")
            };
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

    pub(crate) fn instance_load(&self, id: &VsInstanceId) -> u32 {
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

/// An agent's usage report becomes gauges (this node's /metrics).
pub fn record_usage(consensus: &Consensus, host: &HostId, samples: &[VsUsageSample]) {
    for s in samples.iter().take(4096) {
        let Some((tr, vs)) = consensus.read(|st| {
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
fn record_instance_counts(consensus: &Consensus) {
    let counts = consensus.read(|s| {
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
pub async fn report_load(
    cluster: Cluster,
    load: Arc<LoadBoard>,
    prometheus: &'static PrometheusHandle,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        record_instance_counts(&cluster.consensus);
        // Histograms keep their samples until upkeep folds them in: without
        // this, memory grows with every call while nobody scrapes /metrics.
        prometheus.run_upkeep();
        if cluster.consensus.is_leader() {
            continue;
        }
        let peaks = load.local_peaks();
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
