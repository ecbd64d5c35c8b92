//! The agent's shared state: the DS processes it runs, the fleet, and what
//! its tasks share, behind one briefly held lock.

use crate::config::AgentConfig;
use crate::events::EventQueue;
use crate::health::HealthTracker;
use crate::link::ServerLink;
use crate::reporter::Reporter;
use crate::vs::VsHost;
use respawn_runtime::leftovers::Ledger;
use respawn_types::agent::LiveProcess;
use respawn_types::sdk::SdkEvent;
use respawn_types::{ExitReason, Fleet, ProcessId};
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
}

impl Proc {
    pub(crate) fn live(&self) -> LiveProcess {
        LiveProcess {
            process_id: self.id.clone(),
            pid: self.pid,
            port: self.port,
            log_paths: self.log_paths.clone(),
            ending: self.ending,
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

/// Messages to the DS supervisor task.
#[derive(Debug)]
pub(crate) enum SupMsg {
    /// The fleet changed: check the process count.
    Reconcile,
    /// A process is gone; `started` = it had called ProcessReady.
    Exited { started: bool },
}
