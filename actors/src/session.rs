//! One actor per battle session that is PENDING or ACTIVATING: it owns the
//! placement timeout and the activation timeout, re-armed from the committed
//! deadlines whenever the session changes (and after a restart).

use crate::policy::{session_due, SessionDue, SessionView};
use crate::ports::{Deps, ProposeError};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use respawn_types::{now_millis, BattleSessionId};
use std::time::Duration;
use tokio::task::JoinHandle;

pub struct SessionActor;

#[derive(Debug)]
pub enum SessionMsg {
    /// The session or its placement changed: re-evaluate.
    Changed,
    /// A timer fired.
    Tick,
    /// A proposed timeout command finished.
    Proposed { retry: bool },
}

pub struct SessionState {
    id: BattleSessionId,
    deps: Deps,
    timer: Option<JoinHandle<Result<(), ractor::MessagingErr<SessionMsg>>>>,
    proposing: bool,
}

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = (BattleSessionId, Deps);

    async fn pre_start(
        &self,
        _myself: ActorRef<SessionMsg>,
        (id, deps): Self::Arguments,
    ) -> Result<SessionState, ActorProcessingErr> {
        Ok(SessionState {
            id,
            deps,
            timer: None,
            proposing: false,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<SessionMsg>,
        st: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        evaluate(&myself, st);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        msg: SessionMsg,
        st: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SessionMsg::Changed | SessionMsg::Tick => evaluate(&myself, st),
            SessionMsg::Proposed { retry } => {
                st.proposing = false;
                if retry {
                    st.timer =
                        Some(myself.send_after(Duration::from_millis(500), || SessionMsg::Tick));
                } else {
                    evaluate(&myself, st);
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SessionMsg>,
        st: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(t) = st.timer.take() {
            t.abort();
        }
        Ok(())
    }
}

fn evaluate(myself: &ActorRef<SessionMsg>, st: &mut SessionState) {
    if let Some(t) = st.timer.take() {
        t.abort();
    }
    let now = now_millis();
    match st
        .deps
        .read(|s| session_due(SessionView::of(s, &st.id), now))
    {
        SessionDue::Finished => myself.stop(None),
        SessionDue::Idle => {}
        SessionDue::At(at) => {
            let wait = Duration::from_millis(at.saturating_sub(now) + 1);
            st.timer = Some(myself.send_after(wait, || SessionMsg::Tick));
        }
        SessionDue::Now(command) => {
            if st.proposing {
                return;
            }
            st.proposing = true;
            tracing::info!(battle_session = %st.id, ?command, "deadline passed");
            let commands = st.deps.commands.clone();
            let me = myself.clone();
            tokio::spawn(async move {
                let retry = match commands.propose(*command).await {
                    Ok(_) => false,
                    Err(ProposeError::Rejected(r)) => {
                        tracing::debug!(%r, "timeout command rejected");
                        false
                    }
                    Err(ProposeError::Unavailable(e)) => {
                        tracing::warn!(%e, "could not commit a timeout; retrying");
                        true
                    }
                };
                let _ = me.cast(SessionMsg::Proposed { retry });
            });
        }
    }
}
