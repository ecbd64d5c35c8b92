//! Forking (shared-memory) mode, the seed's §5.1: the agent launches one
//! forking parent per host; it calls the forking ProcessReady (no game
//! port, no health checks, no event stream needed — a process that forks
//! should stay single-threaded), then forks DS processes. A forked process
//! inherits its parent's environment, token included: it calls the
//! ordinary ProcessReady with that token and its own `pid`, and the agent,
//! having checked that the pid is a live descendant of the parent, gives it
//! its own process id and token (in the answer) and watches it by pid. From
//! then on it is a DS like any other, hosting one battle session in its
//! lifetime; the parent hosts none. At most the fleet's
//! `processes_per_host` forked processes are registered on a host at once.

use crate::events::EventQueue;
use crate::health::HealthTracker;
use crate::health_actor::HealthActor;
use crate::request::{authenticate, check_log_paths, parse, read, SdkApiError};
use crate::state::{Proc, Shared, SupMsg};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use respawn_runtime::foreign::{descends_from, Foreign};
use respawn_runtime::leftovers::Recorded;
use respawn_types::agent::{AgentToServer, ErrorCode};
use respawn_types::sdk::{
    AvailableDsInstanceCount, DsInstancePerCvm, ForkingProcessReadyRequest, ProcessReadyAnswer,
    ProcessReadyRequest, SdkOk,
};
use respawn_types::{ExitReason, ProcessId, ProcessRole, ServerMode};
use std::sync::Arc;
use tokio::sync::mpsc;

/// `POST /v1/forking/process_ready`: the launched process of a forking
/// fleet says it is about to fork.
pub(crate) async fn forking_process_ready(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SdkOk>, SdkApiError> {
    let id = authenticate(&shared, &headers)?;
    let req: ForkingProcessReadyRequest = parse(body)?;
    check_log_paths(&req.log_paths)?;
    let mut reg = shared.reg();
    let forking = reg
        .fleet
        .as_ref()
        .is_some_and(|f| f.mode == ServerMode::Forking);
    let p = reg.procs.get_mut(&id).ok_or_else(|| {
        SdkApiError::unauthorized("unknown process token (has this process exited?)")
    })?;
    if !forking {
        return Err(SdkApiError::new(
            ErrorCode::InvalidState,
            "the fleet is not in forking mode (mode = \"forking\"); call /v1/process_ready",
        ));
    }
    if matches!(p.role, ProcessRole::Forked { .. }) {
        return Err(SdkApiError::new(
            ErrorCode::InvalidState,
            "a forked process cannot be a forking parent",
        ));
    }
    if p.ending || p.terminating {
        return Err(SdkApiError::new(
            ErrorCode::InvalidState,
            "the process is ending",
        ));
    }
    if p.role == ProcessRole::ForkingParent {
        if p.log_paths == req.log_paths {
            return Ok(Json(SdkOk { ok: true }));
        }
        return Err(SdkApiError::new(
            ErrorCode::Conflict,
            "the forking ProcessReady was already called with other log_paths",
        ));
    }
    p.role = ProcessRole::ForkingParent;
    p.log_paths = req.log_paths.clone();
    shared.reporter.send(AgentToServer::ForkingParentReady {
        process_id: id.clone(),
        log_paths: req.log_paths,
    });
    tracing::info!(process_id = %id, pid = p.pid, "forking parent ready");
    Ok(Json(SdkOk { ok: true }))
}

/// Checks an empty or `{}` body of a call that takes no argument.
fn no_arguments(body: Result<Bytes, BytesRejection>) -> Result<(), SdkApiError> {
    let bytes = read(body)?;
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes).map_err(
            |e| SdkApiError::bad_request(format!("invalid JSON body (expected {{}}): {e}")),
        )?;
    }
    Ok(())
}

/// `POST /v1/forking/query_ds_instance_per_cvm_config`.
pub(crate) async fn query_ds_instance_per_cvm_config(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<DsInstancePerCvm>, SdkApiError> {
    authenticate(&shared, &headers)?;
    no_arguments(body)?;
    let n = shared
        .reg()
        .fleet
        .as_ref()
        .map_or(0, |f| f.runtime.processes_per_host);
    Ok(Json(DsInstancePerCvm {
        ds_instance_per_cvm: n,
    }))
}

/// `POST /v1/forking/query_available_ds_instance_count`.
pub(crate) async fn query_available_ds_instance_count(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AvailableDsInstanceCount>, SdkApiError> {
    authenticate(&shared, &headers)?;
    no_arguments(body)?;
    let n = shared.reg().forked() as u32;
    Ok(Json(AvailableDsInstanceCount {
        available_ds_instance_count: n,
    }))
}

/// ProcessReady called with the token of `caller`: `Ok(None)` when that is
/// an ordinary call (the caller is not the launched process of a forking
/// fleet); otherwise the registration of the forked process `req.pid`.
pub(crate) fn ready_via_parent(
    shared: &Arc<Shared>,
    caller: &ProcessId,
    req: &ProcessReadyRequest,
) -> Result<Option<ProcessReadyAnswer>, SdkApiError> {
    let (parent_pid, cap) = {
        let reg = shared.reg();
        let forking = reg.fleet.as_ref().filter(|f| f.mode == ServerMode::Forking);
        let (Some(fleet), Some(p)) = (forking, reg.procs.get(caller)) else {
            return Ok(None);
        };
        if matches!(p.role, ProcessRole::Forked { .. }) {
            return Ok(None);
        }
        if p.role != ProcessRole::ForkingParent {
            return Err(SdkApiError::new(
                ErrorCode::InvalidState,
                "forking mode: the launched process calls POST /v1/forking/process_ready first; \
                 the processes it forks then call ProcessReady with their pid",
            ));
        }
        if p.ending || p.terminating {
            return Err(SdkApiError::new(
                ErrorCode::InvalidState,
                "the forking parent is ending",
            ));
        }
        (p.pid, fleet.runtime.processes_per_host as usize)
    };
    let pid = req.pid.ok_or_else(|| {
        SdkApiError::bad_request(
            "pid: required when a forked process calls ProcessReady with its forking parent's token",
        )
    })?;
    if pid == parent_pid {
        return Err(SdkApiError::bad_request(
            "pid: that is the forking parent's own pid; the parent calls /v1/forking/process_ready",
        ));
    }
    // Read /proc outside the lock.
    if !descends_from(pid, parent_pid) {
        return Err(SdkApiError::new(
            ErrorCode::Forbidden,
            format!("pid: process {pid} is not a live descendant of the forking parent (pid {parent_pid})"),
        ));
    }
    let foreign = Foreign::adopt(pid)
        .ok_or_else(|| SdkApiError::bad_request(format!("pid: process {pid} is not running")))?;
    let (kill_tx, kill_rx) = mpsc::unbounded_channel();
    let mut reg = shared.reg();
    let existing = reg.procs.values().find(|p| {
        p.pid == pid
            && p.role
                == ProcessRole::Forked {
                    parent: caller.clone(),
                }
    });
    if let Some(p) = existing {
        // A retry: the same registration again.
        return Ok(Some(answer(shared, p)));
    }
    if reg.stopping {
        return Err(SdkApiError::new(
            ErrorCode::Unavailable,
            "the agent is stopping",
        ));
    }
    if reg.forked() >= cap {
        return Err(SdkApiError::new(
            ErrorCode::Conflict,
            format!(
                "this host already runs {cap} forked processes (the fleet's processes_per_host); \
                 QueryAvailableDsInstanceCount tells how many run"
            ),
        ));
    }
    let id = ProcessId::generate();
    let token = crate::supervisor::new_token();
    let log_dir = shared.logs_dir.join(id.as_str());
    std::fs::create_dir_all(&log_dir).map_err(|e| {
        SdkApiError::new(
            ErrorCode::Internal,
            format!("cannot create {}: {e}", log_dir.display()),
        )
    })?;
    let recorded = shared.ledger.record(pid);
    let proc = Proc {
        id: id.clone(),
        pid,
        token: token.clone(),
        port: Some(req.port),
        log_paths: req.log_paths.clone(),
        ending: false,
        terminating: false,
        events: EventQueue::default(),
        health: Some(HealthTracker::new()),
        kill: kill_tx,
        exit_reason: None,
        role: ProcessRole::Forked {
            parent: caller.clone(),
        },
    };
    let out = answer(shared, &proc);
    reg.tokens.insert(token, id.clone());
    reg.procs.insert(id.clone(), proc);
    shared.reporter.send(AgentToServer::ProcessForked {
        process_id: id.clone(),
        parent_id: caller.clone(),
        pid,
    });
    shared.reporter.send(AgentToServer::ProcessReady {
        process_id: id.clone(),
        port: req.port,
        log_paths: req.log_paths.clone(),
    });
    drop(reg);
    tracing::info!(process_id = %id, pid, parent = %caller, port = req.port, "forked process registered");
    tokio::spawn(watch(
        shared.clone(),
        id.clone(),
        foreign,
        recorded,
        kill_rx,
    ));
    HealthActor::start(shared.clone(), id);
    Ok(Some(out))
}

fn answer(shared: &Shared, p: &Proc) -> ProcessReadyAnswer {
    ProcessReadyAnswer {
        ok: true,
        process_id: Some(p.id.clone()),
        process_token: Some(p.token.clone()),
        log_dir: Some(shared.logs_dir.join(p.id.as_str()).display().to_string()),
    }
}

/// Waits for a forked process to exit (killing it on request), then
/// unregisters it. Its exit status is its parent's to reap, so it is
/// reported without one.
async fn watch(
    shared: Arc<Shared>,
    id: ProcessId,
    foreign: Foreign,
    recorded: Recorded,
    mut kill: mpsc::UnboundedReceiver<()>,
) {
    loop {
        tokio::select! {
            () = foreign.exited() => break,
            Some(()) = kill.recv() => foreign.kill(),
        }
    }
    drop(recorded);
    shared.unregister(
        &id,
        ExitReason::Exited {
            code: None,
            signal: None,
        },
    );
    let _ = shared.supervisor.send(SupMsg::Reconcile);
}
