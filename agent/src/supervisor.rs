//! Launching DS processes, watching them exit, and keeping the fleet's
//! number of them running. Processes are spawned with
//! [`respawn_runtime::child::spawn`] (death with the agent, a record in the
//! agent's ledger), their stdout and stderr piped into `stdout.log` and
//! `stderr.log` rotated by size ([`respawn_runtime::rotate`]), and relaunched under [`respawn_runtime::LaunchBackoff`], like VS instances.

use crate::backoff::ds_launch_backoff;
use crate::events::EventQueue;
use crate::state::{Proc, Shared, SupMsg};
use respawn_runtime::child::{self, Output};
use respawn_runtime::leftovers::Recorded;
use respawn_runtime::rotate::pump_to_file;
use respawn_types::agent::AgentToServer;
use respawn_types::sdk::{
    ENV_FLEET_ID, ENV_HOST_ID, ENV_LOG_DIR, ENV_PROCESS_ID, ENV_PROCESS_TOKEN, ENV_SDK_ENDPOINT,
};
use respawn_types::{ExitReason, Fleet, ProcessId};
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The supervisor: launches processes until `Registry::launches_wanted` run,
/// backing off while they fail to start.
pub async fn supervise(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<SupMsg>) {
    let mut backoff = ds_launch_backoff();
    let mut not_before = Instant::now();
    loop {
        let mut missing;
        loop {
            let fleet = {
                let reg = shared.reg();
                // Forked processes (forking mode) are not the supervisor's.
                missing = reg.launches_wanted().saturating_sub(reg.launched());
                reg.fleet.clone()
            };
            let Some(fleet) = fleet else { break };
            if missing == 0 || Instant::now() < not_before {
                break;
            }
            if let Err((process_id, error)) = launch(&shared, &fleet) {
                tracing::error!(%process_id, %error, launch_path = %fleet.runtime.launch_path, "cannot launch DS process");
                shared.reporter.send(AgentToServer::ProcessExited {
                    process_id,
                    reason: ExitReason::LaunchFailed { error },
                });
                backoff.on_exit(false);
                not_before = Instant::now() + backoff.delay();
            }
        }
        let backing_off = missing > 0;
        tokio::select! {
            msg = rx.recv() => match msg {
                None => return,
                Some(SupMsg::Reconcile) => {}
                Some(SupMsg::Exited { started }) => {
                    backoff.on_exit(started);
                    not_before = not_before.max(Instant::now() + backoff.delay());
                    if backoff.failures() > 0 {
                        tracing::warn!(failures = backoff.failures(), delay = ?backoff.delay(), "DS processes fail to start; backing off");
                    }
                }
            },
            _ = tokio::time::sleep_until(not_before), if backing_off => {}
        }
    }
}

/// A fresh random bearer token (256 bits, hex).
pub(crate) fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Launches one process of `fleet`. On failure returns the id it would have
/// had and why.
fn launch(shared: &Arc<Shared>, fleet: &Fleet) -> Result<(), (ProcessId, String)> {
    let id = ProcessId::generate();
    let token = new_token();
    let log_dir = shared.logs_dir.join(id.as_str());
    let fail = |what: &str, e: std::io::Error| (id.clone(), format!("{what}: {e}"));

    let rt = &fleet.runtime;
    let config = &shared.config;
    let mut cmd = Command::new(&rt.launch_path);
    cmd.args(&rt.args)
        .envs(&rt.env)
        .env(ENV_SDK_ENDPOINT, &shared.endpoint)
        .env(ENV_PROCESS_ID, id.as_str())
        .env(ENV_PROCESS_TOKEN, &token)
        .env(ENV_FLEET_ID, fleet.id.as_str())
        .env(ENV_HOST_ID, config.host_id.as_str())
        .env(ENV_LOG_DIR, &log_dir);

    let (kill_tx, kill_rx) = mpsc::unbounded_channel();
    // Spawn, register and report under the registry lock, so the process
    // cannot call the local API before it is known and ProcessStarted is
    // queued before anything it causes.
    let mut reg = shared.reg();
    if reg.stopping {
        return Ok(());
    }
    // Made under the lock, as the log sweep lists directories under it.
    std::fs::create_dir_all(&log_dir)
        .map_err(|e| fail(&format!("cannot create {}", log_dir.display()), e))?;
    let (mut child, recorded) = child::spawn(cmd, Output::Piped, &shared.ledger)
        .map_err(|e| fail(&format!("cannot run {:?}", rt.launch_path), e))?;
    // stdout.log and stderr.log, rotated by size.
    let rotation = shared.config.logs.rotation;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(pump_to_file(out, log_dir.join("stdout.log"), rotation));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(pump_to_file(err, log_dir.join("stderr.log"), rotation));
    }
    let Some(pid) = child.id() else {
        // Only None once the child has been reaped, which nothing did yet.
        return Err((id, "process vanished at launch".into()));
    };
    reg.tokens.insert(token.clone(), id.clone());
    reg.procs.insert(
        id.clone(),
        Proc {
            id: id.clone(),
            pid,
            token,
            port: None,
            log_paths: Vec::new(),
            ending: false,
            terminating: false,
            events: EventQueue::default(),
            health: None,
            kill: kill_tx,
            exit_reason: None,
            role: Default::default(),
        },
    );
    shared.reporter.send(AgentToServer::ProcessStarted {
        process_id: id.clone(),
        pid,
        fleet_version: fleet.version,
    });
    drop(reg);
    tracing::info!(process_id = %id, pid, "DS process launched");
    tokio::spawn(watch(shared.clone(), id, child, recorded, kill_rx));
    Ok(())
}

/// Waits for the process to exit (killing it on request), then unregisters
/// it, reports ProcessExited and tells the supervisor.
async fn watch(
    shared: Arc<Shared>,
    id: ProcessId,
    mut child: Child,
    recorded: Recorded,
    mut kill: mpsc::UnboundedReceiver<()>,
) {
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            Some(()) = kill.recv() => {
                if let Err(e) = child.start_kill() {
                    tracing::debug!(process_id = %id, error = %e, "kill failed (already exited?)");
                }
            }
        }
    };
    drop(recorded); // Exited: nothing to stop after a crash.
    let from_status = match status {
        Ok(s) => ExitReason::Exited {
            code: s.code(),
            signal: s.signal(),
        },
        Err(e) => {
            tracing::error!(process_id = %id, error = %e, "cannot wait for DS process");
            ExitReason::Exited {
                code: None,
                signal: None,
            }
        }
    };
    let Some(started) = shared.unregister(&id, from_status) else {
        return;
    };
    let _ = shared.supervisor.send(SupMsg::Exited { started });
}
