//! The agent's shared state: the DS processes it runs, the fleet, and what
//! its tasks share, behind one briefly held lock.

use crate::config::AgentConfig;
use crate::events::EventQueue;
use crate::health::HealthTracker;
use crate::link::ServerLink;
use crate::reporter::Reporter;
use crate::vs::VsHost;
use respawn_runtime::leftovers::Ledger;
use respawn_types::agent::{AgentToServer, LiveProcess};
use respawn_types::sdk::SdkEvent;
use respawn_types::{ExitReason, Fleet, ProcessId, ProcessRole, ServerMode};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// Health-check interval bounds the agent enforces whatever the fleet says.
const MIN_HEALTH_INTERVAL: Duration = Duration::from_millis(50);
const MAX_HEALTH_INTERVAL: Duration = Duration::from_secs(600);
/// Health-check interval before any fleet is known.
const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// One DS process the agent runs.
pub(crate) struct Proc {
    pub(crate) id: ProcessId,
    pub(crate) pid: u32,
    pub(crate) token: String,
    /// Set by ProcessReady.
    pub(crate) port: Option<u16>,
    pub(crate) log_paths: Vec<String>,
    /// The DS called ProcessEnding.
    pub(crate) ending: bool,
    /// OnProcessTerminate was sent; the process is killed after the grace.
    pub(crate) terminating: bool,
    pub(crate) events: EventQueue,
    /// Present once the process is ready.
    pub(crate) health: Option<HealthTracker>,
    /// Asks the process's watcher to SIGKILL it.
    pub(crate) kill: mpsc::UnboundedSender<()>,
    /// Reported instead of the exit status when the agent ended the process.
    pub(crate) exit_reason: Option<ExitReason>,
    /// Forking mode: a ready forking parent, or a process it forked.
    pub(crate) role: ProcessRole,
}

impl Proc {
    pub(crate) fn live(&self) -> LiveProcess {
        LiveProcess {
            process_id: self.id.clone(),
            pid: self.pid,
            port: self.port,
            log_paths: self.log_paths.clone(),
            ending: self.ending,
            role: self.role.clone(),
        }
    }
}

/// Mutable state of the agent, behind one lock held only briefly (never
/// across an await).
#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) fleet: Option<Fleet>,
    pub(crate) procs: HashMap<ProcessId, Proc>,
    /// Process token → process.
    pub(crate) tokens: HashMap<String, ProcessId>,
    /// Shutting down: launch nothing more.
    pub(crate) stopping: bool,
}

impl Registry {
    /// How many processes the agent should launch itself: one forking
    /// parent in forking mode (it forks the rest), else `processes_per_host`.
    pub(crate) fn launches_wanted(&self) -> usize {
        if self.stopping {
            return 0;
        }
        match &self.fleet {
            // A draining host's target is 0: not even the parent again.
            Some(f) if f.mode == ServerMode::Forking => usize::from(f.host_target != Some(0)),
            // The autoscaler's target for this host, never above the
            // fleet's per-host ceiling.
            Some(f) => {
                let per_host = f.runtime.processes_per_host;
                f.host_target.map_or(per_host, |t| t.min(per_host)) as usize
            }
            None => 0,
        }
    }

    /// Processes the agent launched (not forked ones) that still run.
    pub(crate) fn launched(&self) -> usize {
        self.procs
            .values()
            .filter(|p| !matches!(p.role, ProcessRole::Forked { .. }))
            .count()
    }

    /// Forked processes registered on this host that still run.
    pub(crate) fn forked(&self) -> usize {
        self.procs.len() - self.launched()
    }
}

/// What the agent's tasks share.
pub(crate) struct Shared {
    pub(crate) config: AgentConfig,
    /// `data_dir/logs`, absolute.
    pub(crate) logs_dir: PathBuf,
    /// Base URL of the local SDK API.
    pub(crate) endpoint: String,
    pub(crate) link: Arc<dyn ServerLink>,
    pub(crate) reporter: Reporter,
    pub(crate) registry: Mutex<Registry>,
    pub(crate) supervisor: mpsc::UnboundedSender<SupMsg>,
    /// Notified whenever a process is gone.
    pub(crate) exited: Notify,
    /// Virtual server instances.
    pub(crate) vs: Arc<VsHost>,
    /// The DS processes spawned, for the next agent after a crash.
    pub(crate) ledger: Arc<Ledger>,
}

impl Shared {
    pub(crate) fn reg(&self) -> MutexGuard<'_, Registry> {
        // The registry stays consistent even if a holder panicked: every
        // critical section is a handful of map operations.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn health_interval(&self) -> Duration {
        self.reg()
            .fleet
            .as_ref()
            .map(|f| Duration::from_millis(f.health_check_interval_ms))
            .unwrap_or(DEFAULT_HEALTH_INTERVAL)
            .clamp(MIN_HEALTH_INTERVAL, MAX_HEALTH_INTERVAL)
    }

    /// Sends OnProcessTerminate and kills the process after the grace.
    /// `exit` is what will be reported when it is gone.
    pub(crate) fn begin_terminate(&self, proc: &mut Proc, reason: String, exit: ExitReason) {
        if proc.terminating {
            return;
        }
        tracing::info!(process_id = %proc.id, %reason, "terminating process");
        proc.terminating = true;
        proc.exit_reason = Some(exit);
        proc.events.push(SdkEvent::ProcessTerminate { reason });
        let kill = proc.kill.clone();
        let grace = self.config.kill_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            // Fails harmlessly if the process is already gone.
            let _ = kill.send(());
        });
    }
}

impl Shared {
    /// A process is gone: unregister it and report its exit (the agent's
    /// own reason when it ended the process, else `from_status`). Returns
    /// whether it had called ProcessReady, `None` if it was not registered.
    pub(crate) fn unregister(&self, id: &ProcessId, from_status: ExitReason) -> Option<bool> {
        let started = {
            let mut reg = self.reg();
            let mut p = reg.procs.remove(id)?;
            reg.tokens.remove(&p.token);
            p.events.close();
            let reason = p.exit_reason.take().unwrap_or(from_status);
            tracing::info!(process_id = %id, ?reason, "DS process exited");
            self.reporter.send(AgentToServer::ProcessExited {
                process_id: id.clone(),
                reason,
            });
            // Its log_paths are collected now that it has ended (ds_logs.rs).
            let log_dir = self.logs_dir.join(id.as_str());
            let log_paths = std::mem::take(&mut p.log_paths);
            if !log_paths.is_empty() {
                tokio::task::spawn_blocking(move || crate::ds_logs::collect(&log_dir, &log_paths));
            }
            p.port.is_some() || p.role == ProcessRole::ForkingParent
        };
        self.exited.notify_waiters();
        Some(started)
    }
}

/// Messages to the DS supervisor task.
#[derive(Debug)]
pub(crate) enum SupMsg {
    /// The fleet changed: check the process count.
    Reconcile,
    /// A process is gone; `started` = it had called ProcessReady.
    Exited { started: bool },
}
