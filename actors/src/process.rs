//! The callbacks of a DS process that has not exited, delivered through its
//! agent (OnStartBattleSession, OnTerminateBattleSession, OnProcessTerminate,
//! and the notifications OnBattleSessionUpdated,
//! OnPlayerBattleSessionsTerminated), and the ProcessEnding grace timer,
//! re-armed from the committed `ending_since` after a restart.
//!
//! Only an ENDING or TERMINATING process has an actor ([`ProcessActor`]):
//! it owns the timer and sends its once-only commands. A LAUNCHING or READY
//! process has nothing to keep between messages (each starts a delivery
//! in the background), so the node handles its messages at once with
//! [`handle_without_actor`] instead of keeping an actor per live process
//! (several KB of mailboxes each).

use crate::policy::{
    agent_retry_delay, battle_session_spec, process_due, ProcessDue, ProcessView, SessionSpecView,
};
use crate::ports::{Deps, GatewayError};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use respawn_state::ClusterState;
use respawn_types::agent::{AgentReply, ErrorCode, ServerToAgent};
use respawn_types::*;
use std::time::Duration;
use tokio::task::JoinHandle;

pub struct ProcessActor;

#[derive(Debug)]
pub enum ProcessMsg {
    /// The process record changed: re-evaluate.
    Changed,
    /// The grace timer fired.
    Tick,
    /// A session was assigned to this process: deliver OnStartBattleSession.
    StartSession(BattleSessionId),
    /// A session attempt was withdrawn: deliver OnTerminateBattleSession.
    RevokeSession(BattleSessionId),
    /// Something changed in a session the process holds: tell it.
    Notify(BattleSessionId, Notice),
}

/// What a process is told about a battle session it holds.
#[derive(Debug, Clone)]
pub enum Notice {
    /// OnBattleSessionUpdated: players were added.
    Updated,
    /// OnPlayerBattleSessionsTerminated.
    PlayersTerminated(Vec<PlayerBattleSessionId>),
}

pub struct ProcessState {
    id: ProcessId,
    host: Option<HostId>,
    deps: Deps,
    timer: Option<JoinHandle<Result<(), ractor::MessagingErr<ProcessMsg>>>>,
    terminate_sent: bool,
    kill_sent: bool,
}

impl Actor for ProcessActor {
    type Msg = ProcessMsg;
    type State = ProcessState;
    type Arguments = (ProcessId, Deps);

    async fn pre_start(
        &self,
        _myself: ActorRef<ProcessMsg>,
        (id, deps): Self::Arguments,
    ) -> Result<ProcessState, ActorProcessingErr> {
        let host = deps.read(|s| s.processes.get(&id).map(|p| p.host_id.clone()));
        Ok(ProcessState {
            id,
            host,
            deps,
            timer: None,
            terminate_sent: false,
            kill_sent: false,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<ProcessMsg>,
        st: &mut ProcessState,
    ) -> Result<(), ActorProcessingErr> {
        evaluate(&myself, st);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ProcessMsg>,
        msg: ProcessMsg,
        st: &mut ProcessState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ProcessMsg::Changed | ProcessMsg::Tick => evaluate(&myself, st),
            other => handle_delivery(st, other),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ProcessMsg>,
        st: &mut ProcessState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = st.timer.take() {
            t.abort();
        }
        Ok(())
    }
}

/// Whether a process in `status` needs an actor (a timer or a once-only
/// command, see `crate::policy::process_due`).
pub(crate) fn needs_actor(status: ProcessStatus) -> bool {
    matches!(status, ProcessStatus::Ending | ProcessStatus::Terminating)
}

fn stateless(deps: &Deps, id: &ProcessId) -> ProcessState {
    ProcessState {
        id: id.clone(),
        host: deps.read(|s| s.processes.get(id).map(|p| p.host_id.clone())),
        deps: deps.clone(),
        timer: None,
        terminate_sent: false,
        kill_sent: false,
    }
}

/// Handles a message for a LAUNCHING or READY process, which has no actor:
/// deliveries start at once; `Changed` and `Tick` have nothing to do.
pub(crate) fn handle_without_actor(deps: &Deps, id: &ProcessId, msg: ProcessMsg) {
    match msg {
        ProcessMsg::Changed | ProcessMsg::Tick => {}
        other => handle_delivery(&mut stateless(deps, id), other),
    }
}

/// When the actors are rebuilt (a restart, a new leader): the sessions of
/// process `id` still waiting for activation get their callback again.
pub(crate) fn resend_after_restart(deps: &Deps, id: &ProcessId) {
    resend_activating(&mut stateless(deps, id));
}

fn handle_delivery(st: &mut ProcessState, msg: ProcessMsg) {
    match msg {
        ProcessMsg::Changed | ProcessMsg::Tick => {}
        ProcessMsg::StartSession(bs) => start_session(st, bs),
        ProcessMsg::Notify(bs, notice) => notify(st, bs, notice),
        ProcessMsg::RevokeSession(bs) => {
            let id = st.id.clone();
            deliver(
                st,
                ServerToAgent::TerminateBattleSession {
                    process_id: id.clone(),
                    battle_session_id: bs,
                },
                move |s| {
                    s.processes.get(&id).is_some_and(|p| {
                        matches!(p.status, ProcessStatus::Ready | ProcessStatus::Launching)
                    })
                },
            );
        }
    }
}

/// Rebuilt after a restart: sessions still waiting for activation get their
/// callback again (the DS treats a repeat as a no-op).
fn resend_activating(st: &mut ProcessState) {
    {
        let activating: Vec<BattleSessionId> = st.deps.read(|s| {
            s.sessions_by_process
                .get(&st.id)
                .into_iter()
                .flatten()
                .filter(|b| {
                    s.battle_sessions
                        .get(*b)
                        .is_some_and(|x| x.status == BattleSessionStatus::Activating)
                })
                .cloned()
                .collect()
        });
        for bs in activating {
            start_session(st, bs);
        }
    }
}

fn start_session(st: &mut ProcessState, bs: BattleSessionId) {
    let Some((process_id, _, spec)) = st
        .deps
        .read(|s| battle_session_spec(SessionSpecView::of(s), &bs))
    else {
        return;
    };
    if process_id != st.id {
        return;
    }
    let id = st.id.clone();
    deliver(
        st,
        ServerToAgent::StartBattleSession {
            process_id: id.clone(),
            session: spec,
        },
        move |s| {
            s.battle_sessions.get(&bs).is_some_and(|x| {
                x.status == BattleSessionStatus::Activating && x.process_id.as_ref() == Some(&id)
            })
        },
    );
}

/// Delivers a notice about session `bs` while the process still holds it
/// (ACTIVATING or ACTIVE) and is alive.
fn notify(st: &mut ProcessState, bs: BattleSessionId, notice: Notice) {
    let event = match notice {
        Notice::Updated => {
            let Some((process_id, _, spec)) = st
                .deps
                .read(|s| battle_session_spec(SessionSpecView::of(s), &bs))
            else {
                return;
            };
            if process_id != st.id {
                return;
            }
            sdk::SdkEvent::BattleSessionUpdated {
                battle_session: spec,
            }
        }
        Notice::PlayersTerminated(ids) => sdk::SdkEvent::PlayerBattleSessionsTerminated {
            battle_session_id: bs.clone(),
            player_battle_session_ids: ids,
        },
    };
    let Ok(event_json) = serde_json::to_string(&event) else {
        return;
    };
    let id = st.id.clone();
    deliver(
        st,
        ServerToAgent::Notify {
            process_id: id.clone(),
            event_json,
        },
        move |s| {
            let held = s.battle_sessions.get(&bs).is_some_and(|x| {
                matches!(
                    x.status,
                    BattleSessionStatus::Activating | BattleSessionStatus::Active
                ) && x.process_id.as_ref() == Some(&id)
            });
            held && s
                .processes
                .get(&id)
                .is_some_and(|p| p.status == ProcessStatus::Ready)
        },
    );
}

fn evaluate(myself: &ActorRef<ProcessMsg>, st: &mut ProcessState) {
    if let Some(t) = st.timer.take() {
        t.abort();
    }
    let now = now_millis();
    match st
        .deps
        .read(|s| process_due(ProcessView::of(s, &st.id), now))
    {
        ProcessDue::Finished => myself.stop(None),
        ProcessDue::Idle => {}
        ProcessDue::KillAt(at) => {
            let wait = Duration::from_millis(at.saturating_sub(now) + 1);
            st.timer = Some(myself.send_after(wait, || ProcessMsg::Tick));
        }
        ProcessDue::KillNow => {
            if !st.kill_sent {
                st.kill_sent = true;
                tracing::info!(process = %st.id, "ProcessEnding grace expired; killing");
                let id = st.id.clone();
                deliver(
                    st,
                    ServerToAgent::KillProcess {
                        process_id: id.clone(),
                    },
                    move |s| {
                        s.processes
                            .get(&id)
                            .is_some_and(|p| p.status != ProcessStatus::Exited)
                    },
                );
            }
        }
        ProcessDue::Terminate => {
            if !st.terminate_sent {
                st.terminate_sent = true;
                let id = st.id.clone();
                let reason = "the cluster no longer needs this process".to_string();
                deliver(
                    st,
                    ServerToAgent::TerminateProcess {
                        process_id: id.clone(),
                        reason,
                    },
                    move |s| {
                        s.processes
                            .get(&id)
                            .is_some_and(|p| p.status == ProcessStatus::Terminating)
                    },
                );
            }
        }
    }
}

/// Sends `command` to the process's agent in the background, retrying with
/// backoff while `wanted` still holds on the current state.
fn deliver(
    st: &ProcessState,
    command: ServerToAgent,
    wanted: impl Fn(&ClusterState) -> bool + Send + 'static,
) {
    let Some(host) = st.host.clone() else { return };
    let deps = st.deps.clone();
    let process = st.id.clone();
    tokio::spawn(async move {
        for attempt in 0u32.. {
            if !deps.read(&wanted) {
                return;
            }
            match deps.gateway.send(&host, command.clone()).await {
                Ok(
                    AgentReply::Ok
                    | AgentReply::VsLogs { .. }
                    | AgentReply::DsLogFiles { .. }
                    | AgentReply::DsLogChunk { .. },
                ) => return,
                Ok(AgentReply::Err(e)) if e.code == ErrorCode::NotFound => {
                    tracing::warn!(%process, %host, error = %e, "agent does not know the process");
                    return;
                }
                Ok(AgentReply::Err(e)) => {
                    tracing::warn!(%process, %host, error = %e, "agent refused a command");
                }
                Err(GatewayError::NotConnected(_)) => {}
                Err(e) => tracing::debug!(%process, error = %e, "delivery failed; retrying"),
            }
            tokio::time::sleep(agent_retry_delay(attempt)).await;
        }
    });
}
