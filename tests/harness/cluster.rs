//! A harness for multi-node tests: N server nodes in this process over one
//! transport seam (in memory, or real QUIC on loopback), M simulated agents
//! ([`SimAgent`]) on real QUIC links, and fault injection: partition any sets of nodes,
//! isolate one, delay or drop messages, crash a node (or stop it) and
//! restart it with its data. Everything outside observers see is recorded in a [`History`].
#![allow(clippy::field_reassign_with_default)]

use crate::backend::Backend;
use crate::history::{History, Observation};
pub use crate::recorded::*;
use crate::support::{init_logs, wait_for};
use anyhow::Context;
use bytes::Bytes;
use futures::future::BoxFuture;
pub use respawn::simulated_agent::SimAgent;
pub use respawn::simulated_agent::SimAgentOptions;
use respawn::simulated_agent::{SimEvent, SimObserver};
use respawn::ServerNode;
use respawn_config::{Bootstrap, Config, FleetSpec, MemberSpec, TitleRegionSpec};
use respawn_net::transport::{MemRouter, Service, SharedTransport, Transport, TransportError};
use respawn_net::{CaBundle, Identity, PeerKind, Pki};
use respawn_state::ClusterState;
use respawn_types::fleet::ModeName;
use respawn_types::*;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const TITLE_REGION: &str = "tr-cluster";
pub const FLEET: &str = "fleet-cluster";
const KEY: &str = "cluster-test-secret-key-0123456789";
/// A second title region, configured in every test cluster, with no fleet:
/// what its credentials can reach shows title-region isolation.
pub const OTHER_TITLE_REGION: &str = "tr-other";
const OTHER_KEY: &str = "other-region-secret-key-9876543210";

/// How nodes reach each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    /// [`MemRouter`]: partitions, delays, drops.
    Memory,
    /// Real QUIC with mutual TLS on loopback; partitions applied at the sender.
    Quic,
}

/// Partitions for the QUIC mode: a call from `a` to `b` fails while they are cut.
#[derive(Default)]
pub struct Cuts(Mutex<BTreeSet<(NodeId, NodeId)>>);

impl Cuts {
    fn cut(&self, a: NodeId, b: NodeId) -> bool {
        self.0.lock().unwrap().contains(&(a, b))
    }
}

/// Wraps a node's transport with the [`Cuts`] (the sender refuses cut
/// pairs) and with its crash: once silenced, every call fails at once.
struct CutTransport {
    me: NodeId,
    inner: SharedTransport,
    cuts: Arc<Cuts>,
    silenced: AtomicBool,
}

impl Transport for CutTransport {
    fn call(
        &self,
        to: NodeId,
        service: Service,
        payload: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Bytes, TransportError>> {
        if self.silenced.load(Ordering::Relaxed) {
            return Box::pin(async move { Err(TransportError::Unreachable(to, "crashed".into())) });
        }
        if self.cuts.cut(self.me, to) {
            return Box::pin(
                async move { Err(TransportError::Unreachable(to, "partitioned".into())) },
            );
        }
        self.inner.call(to, service, payload, timeout)
    }
    fn set_address(&self, node: NodeId, addr: &str) {
        self.inner.set_address(node, addr)
    }
    fn forget(&self, node: NodeId) {
        self.inner.forget(node)
    }
    fn close(&self, within: Duration) -> BoxFuture<'static, ()> {
        self.inner.close(within)
    }
    fn silence(&self) {
        self.silenced.store(true, Ordering::Relaxed);
        self.inner.silence()
    }
}

/// Options of a test cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub nodes: usize,
    pub net: Net,
    /// Build a snapshot (and compact) after this many log entries.
    pub snapshot_every: u64,
    pub placement_timeout_secs: u64,
    pub activation_timeout_secs: u64,
    /// `Some(n)`: [`FLEET`] runs parallel mode, at most `n` sessions per
    /// process (and the simulated agents end sessions, not processes).
    pub parallel: Option<u32>,
    /// `Some((path, args))`: [`FLEET`]'s processes run this executable
    /// (for a real agent, e.g. `respawn sample-ds`), four per host;
    /// `None`: `/bin/false`, for simulated agents.
    pub launch: Option<(String, Vec<String>)>,
    /// The nodes' `[retention]` section.
    pub retention: respawn_config::RetentionSection,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            net: Net::Memory,
            snapshot_every: 5_000,
            placement_timeout_secs: 60,
            activation_timeout_secs: 10,
            parallel: None,
            launch: None,
            retention: Default::default(),
        }
    }
}

fn free_udp() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
fn free_tcp() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// N server nodes in this process.
pub struct TestCluster {
    pub opts: ClusterOptions,
    pub router: Arc<MemRouter>,
    pub cuts: Arc<Cuts>,
    pub ca: CaBundle,
    pub dirs: Vec<tempfile::TempDir>,
    pub cfgs: Vec<Config>,
    pub nodes: Vec<Option<ServerNode>>,
    pub history: History,
}

impl TestCluster {
    pub async fn start(opts: ClusterOptions) -> anyhow::Result<TestCluster> {
        init_logs();
        let ca = Pki::generate_ca("test cluster CA")?;
        let ids: Vec<NodeId> = (1..=opts.nodes as u64).collect();
        let ports: Vec<(u16, u16)> = ids.iter().map(|_| (free_udp(), free_tcp())).collect();
        let members: Vec<MemberSpec> = ids
            .iter()
            .zip(&ports)
            .map(|(id, (q, h))| MemberSpec {
                node_id: *id,
                quic: format!("127.0.0.1:{q}"),
                http: format!("127.0.0.1:{h}"),
            })
            .collect();
        let mut dirs = Vec::new();
        let mut cfgs = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let dir = tempfile::tempdir()?;
            let mut cfg = Config::default();
            cfg.data_dir = dir.path().to_path_buf();
            cfg.log = "warn".into();
            cfg.server.node_id = *id;
            cfg.server.quic_addr = format!("127.0.0.1:{}", ports[i].0).parse()?;
            cfg.server.http_addr = format!("127.0.0.1:{}", ports[i].1).parse()?;
            cfg.server.heartbeat_ms = 100;
            cfg.server.election_timeout_ms = 500;
            cfg.server.snapshot_every = opts.snapshot_every;
            cfg.retention = opts.retention.clone();
            cfg.server.bootstrap = Bootstrap::Members;
            cfg.server.members = members.clone();
            cfg.server.admin_token = Some("test-admin-token-0123456789".into());
            let pki = dir.path().join("pki-node");
            ca.issue(PeerKind::Node, &respawn_net::transport::node_name(*id), &[])?
                .write_dir(&pki)?;
            cfg.server.pki_dir = Some(pki);
            cfg.title_regions = vec![
                TitleRegionSpec {
                    id: TITLE_REGION.into(),
                    title_id: "title-cluster".into(),
                    name: String::new(),
                    title_name: String::new(),
                    title_logo: String::new(),
                    secret_id: Some("sid-cluster".into()),
                    secret_key: Some(KEY.into()),
                },
                TitleRegionSpec {
                    id: OTHER_TITLE_REGION.into(),
                    title_id: "title-other".into(),
                    name: String::new(),
                    title_name: String::new(),
                    title_logo: String::new(),
                    secret_id: Some("sid-other".into()),
                    secret_key: Some(OTHER_KEY.into()),
                },
            ];
            let launch_path = opts
                .launch
                .as_ref()
                .map_or("/bin/false".into(), |(p, _)| p.clone());
            cfg.fleets = vec![FleetSpec {
                id: FLEET.into(),
                title_region: TITLE_REGION.into(),
                definition: FleetDefinition {
                    mode: if opts.parallel.is_some() {
                        ModeName::Parallel
                    } else {
                        ModeName::Simple
                    },
                    max_sessions_per_process: opts.parallel.unwrap_or(1),
                    args: opts.launch.as_ref().map_or(Vec::new(), |(_, a)| a.clone()),
                    processes_per_host: if opts.launch.is_some() { 4 } else { 1 },
                    activation_timeout_secs: opts.activation_timeout_secs,
                    placement_timeout_secs: opts.placement_timeout_secs,
                    ..FleetDefinition::new(launch_path)
                },
            }];
            cfg.validate()?;
            dirs.push(dir);
            cfgs.push(cfg);
        }
        let mut c = TestCluster {
            opts,
            router: MemRouter::with_seed(7),
            cuts: Arc::default(),
            ca,
            dirs,
            cfgs,
            nodes: ids.iter().map(|_| None).collect(),
            history: History::new(),
        };
        for id in ids {
            c.start_node(id).await?;
        }
        c.wait_leader().await?;
        // The first leader applies the configured title regions and fleet
        // after its election; until that commit reaches a node, its edge
        // answers 401/404 for them. Tests start once every node has them.
        let fleet = FleetId::new_unchecked(FLEET);
        wait_for(
            "the configuration on every node",
            Duration::from_secs(30),
            || async {
                c.alive()
                    .iter()
                    .all(|id| {
                        c.read(*id, |s| {
                            s.title_regions.len() >= 2 && s.fleets.contains_key(&fleet)
                        })
                    })
                    .then_some(())
            },
        )
        .await?;
        Ok(c)
    }

    fn idx(id: NodeId) -> usize {
        (id - 1) as usize
    }

    /// Starts (or restarts, with its data) node `id`.
    pub async fn start_node(&mut self, id: NodeId) -> anyhow::Result<()> {
        let cfg = self.cfgs[Self::idx(id)].clone();
        let identity = Identity::load_dir(cfg.server.pki_dir.as_ref().context("pki dir")?)?;
        // QUIC: the production transport, with its settings (connect
        // timeout); partitions are applied at the sender, in memory by the
        // router.
        let inner = match self.opts.net {
            Net::Memory => self.router.transport(id),
            Net::Quic => respawn::node::node_transport(id, &identity)?,
        };
        let transport: SharedTransport = Arc::new(CutTransport {
            me: id,
            inner,
            cuts: self.cuts.clone(),
            silenced: AtomicBool::new(false),
        });
        // A restarted node reuses its ports: `ServerNode::shutdown` and
        // `ServerNode::crash` return once they are free.
        let node = ServerNode::start_with(&cfg, &identity, Some(transport)).await?;
        if self.opts.net == Net::Memory {
            self.router.register(id, node.handler.clone());
        }
        self.nodes[Self::idx(id)] = Some(node);
        Ok(())
    }

    /// Crashes node `id` (its data stays for a restart): it goes silent at
    /// once, with no graceful step — no handover to a successor, no
    /// "going away" to its peers and agents, who find out by their own
    /// timeouts ([`ServerNode::crash`]). What every "killed" scenario uses.
    pub async fn crash(&mut self, id: NodeId) {
        self.router.unregister(id);
        if let Some(n) = self.nodes[Self::idx(id)].take() {
            n.crash().await;
        }
    }

    /// Stops node `id` the orderly way (its data stays for a restart):
    /// actors first, links closed with "going away", Raft stopped, a
    /// successor named if it led ([`ServerNode::shutdown`]).
    pub async fn stop(&mut self, id: NodeId) {
        self.router.unregister(id);
        if let Some(n) = self.nodes[Self::idx(id)].take() {
            n.shutdown().await;
        }
    }

    pub fn node(&self, id: NodeId) -> &ServerNode {
        self.nodes[Self::idx(id)].as_ref().expect("node running")
    }

    pub fn alive(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_some())
            .map(|(i, _)| i as NodeId + 1)
            .collect()
    }

    /// The leader as seen by a majority-side running node, once one is known.
    pub async fn wait_leader(&self) -> anyhow::Result<NodeId> {
        wait_for("a leader", Duration::from_secs(30), || async {
            let alive = self.alive();
            alive.iter().find_map(|id| {
                let n = self.node(*id);
                let l = n.consensus.leader().map(|(l, _)| l)?;
                (alive.contains(&l) && self.node(l).consensus.is_leader()).then_some(l)
            })
        })
        .await
    }

    /// Waits until a leader other than `old` leads.
    pub async fn wait_new_leader(&self, old: NodeId) -> anyhow::Result<NodeId> {
        wait_for("a new leader", Duration::from_secs(30), || async {
            let alive = self.alive();
            alive
                .iter()
                .copied()
                .find(|id| *id != old && self.node(*id).consensus.is_leader())
        })
        .await
    }

    /// A backend calling node `id`'s edge.
    pub fn backend(&self, id: NodeId) -> Backend {
        let r = TitleRegion {
            id: TitleRegionId::new_unchecked(TITLE_REGION),
            title_id: TitleId::new_unchecked("title-cluster"),
            name: String::new(),
            title_name: String::new(),
            secret_id: SecretId::new_unchecked("sid-cluster"),
            secret_key: KEY.into(),
        };
        Backend::new(
            format!("http://{}", self.cfgs[Self::idx(id)].server.http_addr),
            &r,
        )
    }

    /// A backend of [`OTHER_TITLE_REGION`] calling node `id`'s edge.
    pub fn other_backend(&self, id: NodeId) -> Backend {
        let r = TitleRegion {
            id: TitleRegionId::new_unchecked(OTHER_TITLE_REGION),
            title_id: TitleId::new_unchecked("title-other"),
            name: String::new(),
            title_name: String::new(),
            secret_id: SecretId::new_unchecked("sid-other"),
            secret_key: OTHER_KEY.into(),
        };
        Backend::new(
            format!("http://{}", self.cfgs[Self::idx(id)].server.http_addr),
            &r,
        )
    }

    /// QUIC addresses of all nodes (fixed across restarts).
    pub fn quic_addrs(&self) -> Vec<SocketAddr> {
        self.cfgs.iter().map(|c| c.server.quic_addr).collect()
    }

    /// Cuts every link between the two groups (both directions).
    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        match self.opts.net {
            Net::Memory => self.router.partition(a, b),
            Net::Quic => {
                let mut cuts = self.cuts.0.lock().unwrap();
                for x in a {
                    for y in b {
                        cuts.insert((*x, *y));
                        cuts.insert((*y, *x));
                    }
                }
            }
        }
    }

    pub fn isolate(&self, id: NodeId) {
        let others: Vec<NodeId> = (1..=self.opts.nodes as u64).filter(|n| *n != id).collect();
        self.partition(&[id], &others);
    }

    pub fn heal(&self) {
        self.router.heal();
        self.cuts.0.lock().unwrap().clear();
    }

    /// Reads node `id`'s applied state.
    pub fn read<T>(&self, id: NodeId, f: impl FnOnce(&ClusterState) -> T) -> T {
        self.node(id).consensus.read(f)
    }

    /// Waits until every running node has applied the same state as the leader.
    pub async fn wait_converged(&self) -> anyhow::Result<ClusterState> {
        let leader = self.wait_leader().await?;
        wait_for("all nodes to converge", Duration::from_secs(60), || async {
            let want = self.read(leader, |s| s.clone());
            self.alive()
                .iter()
                .all(|id| self.read(*id, |s| s == &want))
                .then_some(want)
        })
        .await
    }

    /// Waits until every one of `placements` has left PENDING (asking the
    /// leader; every read recorded), then until all running nodes have
    /// converged; returns the state.
    pub async fn settle(&self, placements: &[String]) -> anyhow::Result<ClusterState> {
        let b = self.backend(self.wait_leader().await?);
        for pl in placements {
            wait_for(
                &format!("placement {pl} terminal"),
                Duration::from_secs(60),
                || async {
                    let s = describe_recorded(&b, &self.history, pl).await?;
                    (s != PlacementStatus::Pending).then_some(())
                },
            )
            .await?;
        }
        self.wait_converged().await
    }

    /// Issues an agent certificate for `host`.
    pub fn agent_identity(&self, host: &str) -> anyhow::Result<Identity> {
        Ok(self.ca.issue(PeerKind::Agent, host, &[])?)
    }
}

impl TestCluster {
    /// Starts a simulated agent for `host` with `processes` processes of
    /// [`FLEET`], each ending `session` after it activates (and replaced),
    /// linked to `servers` (tried in turn from the first); what its
    /// processes see goes into the cluster's history.
    pub async fn sim_agent(
        &self,
        host: &str,
        processes: usize,
        session: Duration,
        servers: Vec<SocketAddr>,
    ) -> anyhow::Result<SimAgent> {
        self.sim_agent_with_vs(host, processes, session, servers, None)
            .await
    }

    /// [`TestCluster::sim_agent`] that also "runs" virtual-server
    /// instances: it reports each RUNNING on `vs_port` of 127.0.0.1 (an
    /// [`crate::events::EventSink`]'s).
    pub async fn sim_agent_with_vs(
        &self,
        host: &str,
        processes: usize,
        session: Duration,
        servers: Vec<SocketAddr>,
        vs_port: Option<u16>,
    ) -> anyhow::Result<SimAgent> {
        self.sim_agent_with(host, processes, session, servers, |o| o.vs_port = vs_port)
            .await
    }

    /// [`TestCluster::sim_agent`] with its options changed by `tweak`
    /// (e.g. DSs that never activate).
    pub async fn sim_agent_with(
        &self,
        host: &str,
        processes: usize,
        session: Duration,
        servers: Vec<SocketAddr>,
        tweak: impl FnOnce(&mut SimAgentOptions),
    ) -> anyhow::Result<SimAgent> {
        let history = self.history.clone();
        let observer: SimObserver = Arc::new(move |event| history.record(observation(event)));
        let mut opts = SimAgentOptions {
            identity: self.agent_identity(host)?,
            fleet: FleetId::new_unchecked(FLEET),
            servers,
            processes,
            session: Some(session),
            observer,
            vs_port: None,
            parallel: self.opts.parallel.is_some(),
            activate: true,
            launch_delay: Duration::ZERO,
        };
        tweak(&mut opts);
        Ok(SimAgent::start(opts).await?)
    }
}

/// What a simulated process saw, as the history records it.
fn observation(event: SimEvent) -> Observation {
    match event {
        SimEvent::SessionDelivered {
            process,
            battle_session,
        } => Observation::SessionDelivered {
            process,
            battle_session,
        },
        SimEvent::SessionActivated {
            process,
            battle_session,
        } => Observation::SessionActivated {
            process,
            battle_session,
        },
        SimEvent::SessionEnded {
            process,
            battle_session,
        } => Observation::SessionEnded {
            process,
            battle_session,
        },
        SimEvent::ProcessEnded { process } => Observation::ProcessEnded { process },
        SimEvent::TerminateRequested { process } => Observation::TerminateRequested { process },
    }
}
