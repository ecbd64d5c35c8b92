//! The agent runtime: everything a host does except its connection to the
//! cluster.
//!
//! An [`Agent`] launches the fleet's DS processes and keeps
//! `runtime.processes_per_host` of them running, serves them the local SDK
//! API (HTTP/JSON on loopback, described in `docs/sdk-protocol.md`), checks
//! their health, delivers the cluster's commands to them as SDK events, and
//! reports their lifecycle to the cluster through a [`ServerLink`].
//!
//! Wiring, for the owner of the QUIC link:
//!
//! 1. [`Agent::start`] with an [`AgentConfig`] and the link;
//! 2. on every (re)connection send [`Agent::hello`], then give the
//!    `Welcome { fleet }` to [`Agent::apply_fleet`] and call
//!    [`Agent::link_up`] so queued reports flow at once;
//! 3. answer each [`ServerToAgent`] with [`Agent::handle_command`].
//!
//! Reports (ProcessStarted, ProcessReady, ProcessEnding, ProcessExited) are
//! queued and delivered in order, each retried until the link takes it; the
//! DS's other calls (activate, accept/disconnect/remove player, terminate
//! battle session) are forwarded synchronously and answered 503 while the
//! link is down.

use crate::api;
use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::link::ServerLink;
use crate::log_sweep;
use crate::reporter::Reporter;
use crate::state::{Proc, Registry, Shared, SupMsg};
use crate::supervisor::supervise;
use crate::vs::{VsConfig, VsHost};
use respawn_runtime::leftovers::Ledger;
use respawn_types::agent::{
    AgentHello, AgentReply, ErrorCode, LiveProcess, ServerToAgent, WireError, PROTOCOL_VERSION,
};
use respawn_types::sdk::SdkEvent;
use respawn_types::{ExitReason, Fleet, ProcessId};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

/// Runs blocking file work off the async threads.
async fn blocking(
    f: impl FnOnce() -> Result<AgentReply, WireError> + Send + 'static,
) -> AgentReply {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => AgentReply::Err(e),
        Err(e) => AgentReply::Err(WireError::new(ErrorCode::Internal, e.to_string())),
    }
}

/// Most DS processes one host may be asked to run.
pub const MAX_PROCESSES_PER_HOST: u32 = 1024;

/// Background tasks, stopped when the last [`Agent`] handle is dropped.
struct Tasks {
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    supervisor: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    reporter: JoinHandle<()>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.server.abort();
        self.supervisor.abort();
        self.sweeper.abort();
        self.reporter.abort();
        let mut reg = self.shared.reg();
        reg.stopping = true;
        for p in reg.procs.values() {
            let _ = p.kill.send(());
        }
    }
}

/// A running agent. Cheap to clone; the agent stops (and kills its DS
/// processes) when the last clone is dropped or on [`Agent::shutdown`].
#[derive(Clone)]
pub struct Agent {
    pub(crate) shared: Arc<Shared>,
    tasks: Arc<Tasks>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("host_id", &self.shared.config.host_id)
            .field("endpoint", &self.shared.endpoint)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Starts the local SDK API and the supervisor. Nothing is launched
    /// until [`Agent::apply_fleet`] gives the fleet's runtime configuration.
    pub async fn start(
        config: AgentConfig,
        link: Arc<dyn ServerLink>,
    ) -> Result<Agent, AgentError> {
        if !config.local_api_addr.ip().is_loopback() {
            return Err(AgentError::NotLoopback(config.local_api_addr));
        }
        let io = |path: &std::path::Path| {
            let path = path.to_owned();
            move |source| AgentError::Io { path, source }
        };
        let data_dir = std::path::absolute(&config.data_dir).map_err(io(&config.data_dir))?;
        let logs_dir = data_dir.join("logs");
        std::fs::create_dir_all(&logs_dir).map_err(io(&logs_dir))?;
        let listener = tokio::net::TcpListener::bind(config.local_api_addr)
            .await
            .map_err(|source| AgentError::Bind {
                addr: config.local_api_addr,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| AgentError::Bind {
            addr: config.local_api_addr,
            source,
        })?;
        let (reporter, reporter_task) = Reporter::start(link.clone());
        let vs_dir = data_dir.join("vs");
        let vs = VsHost::start(
            VsConfig {
                data_dir: vs_dir.clone(),
                host_id: config.host_id.clone(),
                intranet_addr: config.intranet_addr,
                docker_intranet_host: config.docker_intranet_host.clone(),
                log_rotation: config.logs.rotation,
            },
            link.clone(),
            crate::intranet::router,
        )
        .await
        .map_err(io(&vs_dir))?;
        // What a crashed predecessor left running is stopped before
        // anything new is launched.
        let ledger_dir = data_dir.join("children");
        let ledger = Arc::new(Ledger::open(&ledger_dir).map_err(io(&ledger_dir))?);
        let stopped = ledger.stop_leftovers();
        if stopped > 0 {
            tracing::warn!(
                stopped,
                "stopped DS processes a previous agent left running"
            );
        }
        let (sup_tx, sup_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            config,
            logs_dir,
            endpoint: format!("http://{local_addr}"),
            link,
            reporter,
            registry: Mutex::new(Registry::default()),
            supervisor: sup_tx,
            exited: Notify::new(),
            vs,
            ledger,
        });
        crate::drain_marker::resume(&shared);
        let app = api::router(shared.clone());
        // TCP_NODELAY: answers are not held back waiting for delayed ACKs.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "local SDK API stopped");
            }
        });
        let supervisor = tokio::spawn(supervise(shared.clone(), sup_rx));
        let sweeper = tokio::spawn(log_sweep::run(shared.clone()));
        tracing::info!(endpoint = %shared.endpoint, "agent local SDK API listening");
        let tasks = Arc::new(Tasks {
            shared: shared.clone(),
            server,
            supervisor,
            sweeper,
            reporter: reporter_task,
        });
        Ok(Agent { shared, tasks })
    }

    /// Base URL of the local SDK API (what DS processes get in `RESPAWN_SDK_ENDPOINT`).
    pub fn sdk_endpoint(&self) -> &str {
        &self.shared.endpoint
    }

    /// How many DS processes the agent keeps launched now: the host's
    /// target from the cluster (0 while the host drains), at most the
    /// fleet's `processes_per_host`; one forking parent in forking mode;
    /// 0 while the agent drains itself or before it has a fleet.
    pub fn launch_target(&self) -> usize {
        self.shared.reg().launches_wanted()
    }

    /// Sets the fleet's configuration (after `Welcome`, and on
    /// `FleetUpdated`). The supervisor then keeps
    /// `runtime.processes_per_host` processes running; processes already
    /// running keep running (a smaller count only stops relaunches, so a
    /// process hosting a session is never stopped by scaling).
    pub fn apply_fleet(&self, fleet: Fleet) -> Result<(), AgentError> {
        let expected = &self.shared.config.fleet_id;
        if &fleet.id != expected {
            return Err(AgentError::WrongFleet {
                expected: expected.clone(),
                got: fleet.id,
            });
        }
        let rt = &fleet.runtime;
        if rt.launch_path.is_empty() {
            return Err(AgentError::InvalidFleet("launch_path is empty".into()));
        }
        let has_nul = |s: &str| s.contains('\0');
        if has_nul(&rt.launch_path)
            || rt.args.iter().any(|a| has_nul(a))
            || rt
                .env
                .iter()
                .any(|(k, v)| has_nul(k) || has_nul(v) || k.is_empty() || k.contains('='))
        {
            return Err(AgentError::InvalidFleet(
                "launch_path, args and env may not contain NUL; env names may not be empty or contain '='"
                    .into(),
            ));
        }
        if rt.processes_per_host > MAX_PROCESSES_PER_HOST {
            return Err(AgentError::InvalidFleet(format!(
                "processes_per_host {} is more than {MAX_PROCESSES_PER_HOST}",
                rt.processes_per_host
            )));
        }
        tracing::info!(fleet_id = %fleet.id, processes = rt.processes_per_host, "fleet configuration applied");
        self.shared.reg().fleet = Some(fleet);
        let _ = self.shared.supervisor.send(SupMsg::Reconcile);
        Ok(())
    }

    /// The processes running now, for the Hello on (re)connect.
    pub fn live_processes(&self) -> Vec<LiveProcess> {
        let mut live: Vec<LiveProcess> = self.shared.reg().procs.values().map(Proc::live).collect();
        live.sort_by(|a, b| a.process_id.cmp(&b.process_id));
        live
    }

    /// The Hello to send on every (re)connection.
    pub fn hello(&self) -> AgentHello {
        let c = &self.shared.config;
        AgentHello {
            protocol_version: PROTOCOL_VERSION,
            host_id: c.host_id.clone(),
            fleet_id: c.fleet_id.clone(),
            ip: c.ip.clone(),
            live_processes: self.live_processes(),
            live_vs: self.shared.vs.live(),
        }
    }

    /// The link is (again) registered: deliver queued reports now.
    pub fn link_up(&self) {
        self.shared.reporter.nudge();
        self.shared.vs.link_up();
    }

    /// Reports queued or in flight.
    pub fn pending_reports(&self) -> usize {
        self.shared.reporter.pending()
    }

    /// Executes one command from the cluster.
    pub async fn handle_command(&self, cmd: ServerToAgent) -> AgentReply {
        let vs = &self.shared.vs;
        let cmd = match cmd {
            ServerToAgent::StartVsInstance { spec_json } => {
                return match vs.start_instance(&spec_json).await {
                    Ok(()) => AgentReply::Ok,
                    Err(e) => AgentReply::Err(e),
                }
            }
            ServerToAgent::StopVsInstance { instance_id } => {
                vs.stop_instance(&instance_id).await;
                return AgentReply::Ok;
            }
            ServerToAgent::QueryVsLogs { query_json } => {
                return match vs.query_logs(&query_json).await {
                    Ok(lines_json) => AgentReply::VsLogs { lines_json },
                    Err(e) => AgentReply::Err(e),
                }
            }
            ServerToAgent::ListDsLogs { process_id } => {
                let shared = self.shared.clone();
                return blocking(move || {
                    crate::ds_logs::list(&shared.logs_dir, &process_id)
                        .map(|files| AgentReply::DsLogFiles { files })
                })
                .await;
            }
            ServerToAgent::ReadDsLog {
                process_id,
                name,
                offset,
                len,
            } => {
                let shared = self.shared.clone();
                return blocking(move || {
                    crate::ds_logs::read(&shared.logs_dir, &process_id, &name, offset, len)
                        .map(|(data, size)| AgentReply::DsLogChunk { data, size })
                })
                .await;
            }
            other => other,
        };
        match self.command(cmd) {
            Ok(()) => AgentReply::Ok,
            Err(e) => AgentReply::Err(e),
        }
    }

    fn command(&self, cmd: ServerToAgent) -> Result<(), WireError> {
        let shared = &self.shared;
        let not_found = |id: &ProcessId| {
            WireError::new(ErrorCode::NotFound, format!("no process {id} on this host"))
        };
        match cmd {
            ServerToAgent::FleetUpdated { fleet } => self
                .apply_fleet(fleet)
                .map_err(|e| WireError::new(ErrorCode::BadRequest, e.to_string())),
            ServerToAgent::StartBattleSession {
                process_id,
                session,
            } => {
                let mut reg = shared.reg();
                let p = reg
                    .procs
                    .get_mut(&process_id)
                    .ok_or_else(|| not_found(&process_id))?;
                if p.port.is_none() {
                    return Err(WireError::new(
                        ErrorCode::InvalidState,
                        format!("process {process_id} has not called ProcessReady"),
                    ));
                }
                if p.ending || p.terminating {
                    return Err(WireError::new(
                        ErrorCode::InvalidState,
                        format!("process {process_id} is ending"),
                    ));
                }
                tracing::info!(%process_id, battle_session_id = %session.battle_session_id, "starting battle session");
                p.events.push(SdkEvent::StartBattleSession {
                    battle_session: session,
                });
                Ok(())
            }
            ServerToAgent::TerminateBattleSession {
                process_id,
                battle_session_id,
            } => {
                let mut reg = shared.reg();
                let p = reg
                    .procs
                    .get_mut(&process_id)
                    .ok_or_else(|| not_found(&process_id))?;
                p.events
                    .push(SdkEvent::TerminateBattleSession { battle_session_id });
                Ok(())
            }
            ServerToAgent::Notify {
                process_id,
                event_json,
            } => {
                let event: SdkEvent = serde_json::from_str(&event_json)
                    .ok()
                    .filter(SdkEvent::is_notification)
                    .ok_or_else(|| {
                        WireError::new(ErrorCode::BadRequest, "not a battle session notification")
                    })?;
                let mut reg = shared.reg();
                let p = reg
                    .procs
                    .get_mut(&process_id)
                    .ok_or_else(|| not_found(&process_id))?;
                if p.terminating {
                    return Err(WireError::new(
                        ErrorCode::InvalidState,
                        format!("process {process_id} is terminating"),
                    ));
                }
                p.events.push(event);
                Ok(())
            }
            ServerToAgent::TerminateProcess { process_id, reason } => {
                let mut reg = shared.reg();
                let p = reg
                    .procs
                    .get_mut(&process_id)
                    .ok_or_else(|| not_found(&process_id))?;
                shared.begin_terminate(p, reason, ExitReason::Killed);
                Ok(())
            }
            ServerToAgent::StartVsInstance { .. }
            | ServerToAgent::StopVsInstance { .. }
            | ServerToAgent::QueryVsLogs { .. }
            | ServerToAgent::ListDsLogs { .. }
            | ServerToAgent::ReadDsLog { .. } => Ok(()),
            ServerToAgent::KillProcess { process_id } => {
                let mut reg = shared.reg();
                let p = reg
                    .procs
                    .get_mut(&process_id)
                    .ok_or_else(|| not_found(&process_id))?;
                tracing::info!(%process_id, "killing process (ProcessEnding grace expired)");
                p.exit_reason = Some(ExitReason::EndingGraceExpired);
                let _ = p.kill.send(());
                Ok(())
            }
        }
    }

    /// Stops launching, kills every DS process and waits (up to 10 s) until
    /// they are gone. Their exits are queued as reports (`Killed`).
    pub async fn shutdown(&self) {
        self.shared.vs.shutdown().await;
        {
            let mut reg = self.shared.reg();
            reg.stopping = true;
            for p in reg.procs.values_mut() {
                p.exit_reason.get_or_insert(ExitReason::Killed);
                let _ = p.kill.send(());
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let exited = self.shared.exited.notified();
            if self.shared.reg().procs.is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, exited).await.is_err() {
                tracing::warn!("some DS processes did not exit in time");
                break;
            }
        }
        self.tasks.server.abort();
    }
}
