//! A simulated agent, shared by `respawn bench` and the test harness: ready
//! DS processes on a real QUIC link whose SDK activates a session the
//! moment OnStartBattleSession arrives. Optionally each session ends after
//! a while: in simple mode its process is replaced by a fresh one, in
//! parallel mode the DS terminates the session and keeps serving. The agent
//! keeps one link, moving to the next server when its node goes away, and
//! tells an observer what its processes see.

use crate::NodeError;
use respawn_net::{Endpoint, Identity, Link};
use respawn_types::agent::*;
use respawn_types::*;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Timeout of one request on the link.
const CALL: Duration = Duration::from_secs(5);
/// Pause before retrying a report or a connection.
const RETRY: Duration = Duration::from_millis(50);
/// Reports in flight at once while registering the pool of processes.
const LAUNCH_WINDOW: usize = 256;
/// How long [`SimAgent::start`] waits for its first link.
const LINK_DEADLINE: Duration = Duration::from_secs(30);

/// What the simulated processes see, in the order they see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimEvent {
    /// OnStartBattleSession reached a process.
    SessionDelivered {
        process: ProcessId,
        battle_session: BattleSessionId,
    },
    /// The cluster accepted the process's activation of the session.
    SessionActivated {
        process: ProcessId,
        battle_session: BattleSessionId,
    },
    /// The cluster told the process to end the session.
    SessionEnded {
        process: ProcessId,
        battle_session: BattleSessionId,
    },
    /// A process ended (it is replaced by a fresh one).
    ProcessEnded { process: ProcessId },
    /// The cluster asked a process to terminate (before it ends).
    TerminateRequested { process: ProcessId },
}

/// Told about every [`SimEvent`]; called on the agent's tasks, so it must be quick.
pub type SimObserver = Arc<dyn Fn(SimEvent) + Send + Sync>;

/// How to run a [`SimAgent`].
pub struct SimAgentOptions {
    /// The agent's certificate; its common name is the host id.
    pub identity: Identity,
    /// The fleet its processes belong to.
    pub fleet: FleetId,
    /// Servers to link to, tried in turn from the first.
    pub servers: Vec<SocketAddr>,
    /// Ready processes to register.
    pub processes: usize,
    /// How long a session runs before its process ends and is replaced;
    /// `None`: sessions run until the cluster ends them.
    pub session: Option<Duration>,
    pub observer: SimObserver,
    /// Virtual-server instances: `None`, the agent refuses them; `Some(port)`,
    /// it reports every instance it is asked to start RUNNING on that port
    /// of 127.0.0.1, where the caller serves (the edge then proxies calls
    /// and events there for real; only the runtime is simulated).
    pub vs_port: Option<u16>,
    /// The fleet runs parallel mode: a session that ends is terminated by
    /// its DS (TerminateBattleSession) and the process lives on for more;
    /// otherwise (simple mode) the process ends with its session.
    pub parallel: bool,
    /// `false`: its DSs receive sessions and never activate them (for
    /// activation timeouts and failed placements).
    pub activate: bool,
    /// How long a new process takes to become ready (the initial pool is
    /// ready at once).
    pub launch_delay: Duration,
}

/// A running simulated agent; [`SimAgent::stop`] ends it.
pub struct SimAgent {
    pub host: HostId,
    inner: Arc<SimInner>,
    task: tokio::task::JoinHandle<()>,
}

struct SimInner {
    host: HostId,
    /// Fresh for every simulated agent, so a process id is never reused
    /// even when an agent for the same host comes again.
    run: String,
    link: Mutex<Option<Link>>,
    procs: Mutex<HashMap<ProcessId, LiveProcess>>,
    next: AtomicU64,
    session: Option<Duration>,
    observer: SimObserver,
    connected_to: Mutex<Option<SocketAddr>>,
    stopped: AtomicBool,
    vs_port: Option<u16>,
    parallel: bool,
    activate: bool,
    /// The host's capacity (`processes` of the options) and the cluster's
    /// target for it (`host_target` of the fleet it was sent; `None`: the capacity).
    capacity: usize,
    target: Mutex<Option<u32>>,
    /// The fleet version it launches processes with (the last one sent).
    version: AtomicU64,
    launch_delay: Duration,
    /// The VS instances it "runs" (reported RUNNING on `vs_port`).
    vs: Mutex<BTreeSet<VsInstanceId>>,
}

/// Locks `m`, also when another task panicked holding it (the data stays usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SimInner {
    fn link(&self) -> Option<Link> {
        lock(&self.link).clone()
    }

    fn set_link(&self, link: Option<(Link, SocketAddr)>) {
        let addr = link.as_ref().map(|(_, a)| *a);
        *lock(&self.link) = link.map(|(l, _)| l);
        *lock(&self.connected_to) = addr;
    }

    /// Sends a report until the cluster answers it (any answer but "not
    /// leader" or "unavailable", which are retried); `None` once stopped.
    async fn report(&self, msg: AgentToServer) -> Option<ServerReply> {
        while !self.stopped.load(Ordering::Relaxed) {
            if let Some(l) = self.link() {
                if let Ok(r) = l.request::<_, ServerReply>(&msg, CALL).await {
                    match &r {
                        ServerReply::Err(e)
                            if matches!(e.code, ErrorCode::NotLeader | ErrorCode::Unavailable) => {}
                        _ => return Some(r),
                    }
                }
            }
            tokio::time::sleep(RETRY).await;
        }
        None
    }

    /// How many processes to keep: the cluster's target, within the capacity.
    fn wanted(&self) -> usize {
        let target = *lock(&self.target);
        target.map_or(self.capacity, |t| (t as usize).min(self.capacity))
    }

    /// The fleet the cluster sent (Welcome, FleetUpdated): keep its target.
    fn set_fleet(self: &Arc<Self>, fleet: &Fleet) {
        *lock(&self.target) = fleet.host_target;
        self.version.store(fleet.version, Ordering::Relaxed);
        // All missing processes launch at once, as the real agent's
        // supervisor does (each checks the count again when it starts).
        let missing = self.wanted().saturating_sub(lock(&self.procs).len());
        for _ in 0..missing {
            let me = self.clone();
            tokio::spawn(async move { me.launch(me.launch_delay).await });
        }
    }

    /// Launches one process if fewer than wanted run: Started, then Ready
    /// after `delay`. `false` when none was wanted.
    async fn launch(self: &Arc<Self>, delay: Duration) -> bool {
        if self.stopped.load(Ordering::Relaxed) {
            return false;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = ProcessId::new_unchecked(format!("proc-{}-{}-{n:05}", self.host, self.run));
        let port = 20_000 + (n % 20_000) as u16;
        {
            let wanted = self.wanted();
            let mut procs = lock(&self.procs);
            if procs.len() >= wanted {
                return false;
            }
            procs.insert(
                id.clone(),
                LiveProcess {
                    process_id: id.clone(),
                    pid: 1,
                    port: Some(port),
                    log_paths: vec![],
                    ending: false,
                    role: Default::default(),
                },
            );
        }
        let started = AgentToServer::ProcessStarted {
            process_id: id.clone(),
            pid: 1,
            fleet_version: self.version.load(Ordering::Relaxed),
        };
        if self.report(started).await.is_none() {
            return false;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.report(AgentToServer::ProcessReady {
            process_id: id,
            port,
            log_paths: vec![],
        })
        .await;
        true
    }

    /// Ends a process and launches its replacement (if still wanted).
    async fn end(self: &Arc<Self>, id: ProcessId, reason: ExitReason, ending: bool) {
        if lock(&self.procs).remove(&id).is_none() {
            return;
        }
        (self.observer)(SimEvent::ProcessEnded {
            process: id.clone(),
        });
        if ending {
            let msg = AgentToServer::ProcessEnding {
                process_id: id.clone(),
            };
            if self.report(msg).await.is_none() {
                return;
            }
        }
        let exited = AgentToServer::ProcessExited {
            process_id: id,
            reason,
        };
        if self.report(exited).await.is_none() {
            return;
        }
        self.launch(self.launch_delay).await;
    }

    /// Activates `session` on `process_id`, then ends the process after
    /// the session time, if there is one.
    async fn activate(self: Arc<Self>, process_id: ProcessId, battle_session: BattleSessionId) {
        let msg = AgentToServer::ActivateBattleSession {
            process_id: process_id.clone(),
            battle_session_id: battle_session.clone(),
        };
        if self.report(msg).await != Some(ServerReply::Ok) {
            return;
        }
        (self.observer)(SimEvent::SessionActivated {
            process: process_id.clone(),
            battle_session: battle_session.clone(),
        });
        if let Some(session) = self.session {
            tokio::time::sleep(session).await;
            if self.parallel {
                if !lock(&self.procs).contains_key(&process_id) {
                    return; // the process ended meanwhile, its sessions with it
                }
                // The DS ends the session: it no longer holds it from here.
                (self.observer)(SimEvent::SessionEnded {
                    process: process_id.clone(),
                    battle_session: battle_session.clone(),
                });
                let msg = AgentToServer::TerminateBattleSession {
                    process_id,
                    battle_session_id: battle_session,
                };
                self.report(msg).await;
                return;
            }
            let exited = ExitReason::Exited {
                code: Some(0),
                signal: None,
            };
            self.end(process_id, exited, true).await;
        }
    }

    async fn on_command(self: &Arc<Self>, cmd: ServerToAgent) -> AgentReply {
        match cmd {
            ServerToAgent::StartBattleSession {
                process_id,
                session,
            } => {
                if !lock(&self.procs).contains_key(&process_id) {
                    return AgentReply::Err(WireError::new(ErrorCode::NotFound, "no such process"));
                }
                let battle_session = session.battle_session_id;
                (self.observer)(SimEvent::SessionDelivered {
                    process: process_id.clone(),
                    battle_session: battle_session.clone(),
                });
                if self.activate {
                    tokio::spawn(self.clone().activate(process_id, battle_session));
                }
                AgentReply::Ok
            }
            ServerToAgent::StartVsInstance { spec_json } => {
                let (Some(port), Ok(spec)) = (
                    self.vs_port,
                    serde_json::from_str::<vs::VsInstanceSpec>(&spec_json),
                ) else {
                    return AgentReply::Err(WireError::new(
                        ErrorCode::BadRequest,
                        "this simulated agent runs no virtual servers",
                    ));
                };
                // Start is idempotent: report RUNNING once per instance.
                if lock(&self.vs).insert(spec.instance_id.clone()) {
                    let me = self.clone();
                    tokio::spawn(async move {
                        let running = vs::VsInstanceReport::Running {
                            port,
                            limits: "none".into(),
                        };
                        me.report(AgentToServer::VsInstanceReport {
                            instance_id: spec.instance_id,
                            report: running,
                        })
                        .await;
                    });
                }
                AgentReply::Ok
            }
            ServerToAgent::QueryVsLogs { .. }
            | ServerToAgent::ListDsLogs { .. }
            | ServerToAgent::ReadDsLog { .. } => AgentReply::Err(WireError::new(
                ErrorCode::BadRequest,
                "this simulated agent keeps no logs",
            )),
            ServerToAgent::StopVsInstance { instance_id } => {
                lock(&self.vs).remove(&instance_id);
                let me = self.clone();
                tokio::spawn(async move {
                    me.report(AgentToServer::VsInstanceReport {
                        instance_id,
                        report: vs::VsInstanceReport::Stopped,
                    })
                    .await;
                });
                AgentReply::Ok
            }
            ServerToAgent::TerminateBattleSession {
                process_id,
                battle_session_id,
            } => {
                (self.observer)(SimEvent::SessionEnded {
                    process: process_id,
                    battle_session: battle_session_id,
                });
                AgentReply::Ok
            }
            ServerToAgent::TerminateProcess { process_id, .. } => {
                (self.observer)(SimEvent::TerminateRequested {
                    process: process_id.clone(),
                });
                let me = self.clone();
                tokio::spawn(async move { me.end(process_id, ExitReason::Killed, false).await });
                AgentReply::Ok
            }
            ServerToAgent::KillProcess { process_id } => {
                let me = self.clone();
                tokio::spawn(async move {
                    me.end(process_id, ExitReason::EndingGraceExpired, false)
                        .await
                });
                AgentReply::Ok
            }
            ServerToAgent::FleetUpdated { fleet } => {
                self.set_fleet(&fleet);
                AgentReply::Ok
            }
            // Its processes take notifications and do nothing with them.
            ServerToAgent::Notify { .. } => AgentReply::Ok,
        }
    }

    /// Links to the servers in turn, says hello with the live processes,
    /// serves the cluster's commands until the link drops, and again.
    async fn keep_linked(
        self: Arc<Self>,
        endpoint: Endpoint,
        fleet: FleetId,
        servers: Vec<SocketAddr>,
    ) {
        for addr in servers.iter().copied().cycle() {
            let Ok(link) = endpoint
                .connect_with_timeout(addr, Duration::from_secs(2))
                .await
            else {
                tokio::time::sleep(RETRY).await;
                continue;
            };
            let live: Vec<LiveProcess> = lock(&self.procs).values().cloned().collect();
            let hello = AgentToServer::Hello(AgentHello {
                protocol_version: PROTOCOL_VERSION,
                host_id: self.host.clone(),
                fleet_id: fleet.clone(),
                ip: "127.0.0.1".into(),
                live_processes: live,
                live_vs: lock(&self.vs).iter().cloned().collect(),
            });
            match link.request::<_, ServerReply>(&hello, CALL).await {
                Ok(ServerReply::Welcome { fleet }) => self.set_fleet(&fleet),
                _ => {
                    link.close("hello failed");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            }
            self.set_link(Some((link.clone(), addr)));
            let serve = self.clone();
            let _ = respawn_net::serve_requests(link, move |cmd: ServerToAgent| {
                let s = serve.clone();
                async move { s.on_command(cmd).await }
            })
            .await;
            self.set_link(None);
        }
    }
}

impl SimAgent {
    /// Starts the agent; returns once it is linked and has registered its
    /// processes (or fails after 30 s without a link).
    pub async fn start(opts: SimAgentOptions) -> Result<SimAgent, NodeError> {
        if opts.servers.is_empty() {
            return Err(NodeError::Invalid(
                "a simulated agent needs a server".into(),
            ));
        }
        let name = opts.identity.subject()?.name;
        let host = HostId::parse(name).map_err(|e| NodeError::Invalid(e.to_string()))?;
        let endpoint = Endpoint::client(&opts.identity)?;
        let inner = Arc::new(SimInner {
            host: host.clone(),
            run: uuid::Uuid::now_v7().simple().to_string(),
            link: Mutex::new(None),
            procs: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            session: opts.session,
            observer: opts.observer,
            connected_to: Mutex::new(None),
            stopped: AtomicBool::new(false),
            vs_port: opts.vs_port,
            parallel: opts.parallel,
            activate: opts.activate,
            capacity: opts.processes,
            target: Mutex::new(None),
            version: AtomicU64::new(0),
            launch_delay: opts.launch_delay,
            vs: Mutex::new(BTreeSet::new()),
        });
        let task = tokio::spawn(
            inner
                .clone()
                .keep_linked(endpoint, opts.fleet, opts.servers),
        );
        let agent = SimAgent { host, inner, task };
        let deadline = Instant::now() + LINK_DEADLINE;
        while agent.inner.link().is_none() {
            if Instant::now() >= deadline {
                agent.stop();
                return Err(NodeError::Invalid(format!(
                    "simulated agent not linked after {LINK_DEADLINE:?}"
                )));
            }
            tokio::time::sleep(RETRY).await;
        }
        // Register the pool of ready processes, many at a time.
        let mut launches = tokio::task::JoinSet::new();
        for _ in 0..opts.processes {
            let i = agent.inner.clone();
            launches.spawn(async move { i.launch(Duration::ZERO).await });
            if launches.len() >= LAUNCH_WINDOW {
                launches.join_next().await;
            }
        }
        while launches.join_next().await.is_some() {}
        Ok(agent)
    }

    /// The server address the agent is linked to now.
    pub fn connected_to(&self) -> Option<SocketAddr> {
        *lock(&self.inner.connected_to)
    }

    /// Ids of its running processes.
    pub fn processes(&self) -> BTreeSet<ProcessId> {
        lock(&self.inner.procs).keys().cloned().collect()
    }

    /// Stops the agent: its link closes and its reports in flight give up.
    pub fn stop(self) {
        self.inner.stopped.store(true, Ordering::Relaxed);
        self.task.abort();
        if let Some(l) = self.inner.link() {
            l.close("sim agent stopped");
        }
    }
}
