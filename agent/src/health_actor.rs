//! The health-check actor of one ready DS process.

use crate::health;
use crate::state::Shared;
use respawn_types::sdk::SdkEvent;
use respawn_types::{ExitReason, ProcessId};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// One actor per ready DS process: it owns the health-check timer and asks
/// the process for its health every interval, a thin shell over the pure
/// [`HealthTracker`](crate::health::HealthTracker). It stops when the process is gone, ending or
/// terminated. Unnamed, so never in ractor's global registry.
pub(crate) struct HealthActor;

pub(crate) struct HealthState {
    shared: Arc<Shared>,
    id: ProcessId,
    timer: Option<JoinHandle<Result<(), ractor::MessagingErr<()>>>>,
}

impl HealthActor {
    /// Starts health-checking process `id`.
    pub(crate) fn start(shared: Arc<Shared>, id: ProcessId) {
        tokio::spawn(async move {
            if let Err(e) = ractor::Actor::spawn(None, HealthActor, (shared, id.clone())).await {
                tracing::error!(process_id = %id, error = %e, "cannot start the health-check actor");
            }
        });
    }
}

impl ractor::Actor for HealthActor {
    type Msg = ();
    type State = HealthState;
    type Arguments = (Arc<Shared>, ProcessId);

    async fn pre_start(
        &self,
        myself: ractor::ActorRef<()>,
        (shared, id): Self::Arguments,
    ) -> Result<HealthState, ractor::ActorProcessingErr> {
        let timer = Some(myself.send_after(shared.health_interval(), || ()));
        Ok(HealthState { shared, id, timer })
    }

    /// One tick: send a check, or terminate after too many failures.
    async fn handle(
        &self,
        myself: ractor::ActorRef<()>,
        _tick: (),
        st: &mut HealthState,
    ) -> Result<(), ractor::ActorProcessingErr> {
        let keep_going = {
            let mut reg = st.shared.reg();
            match reg.procs.get_mut(&st.id) {
                Some(p) if !p.terminating && !p.ending => {
                    match p.health.as_mut().map(|t| t.on_tick()) {
                        Some(health::Tick::Send(seq)) => {
                            p.events.push(SdkEvent::HealthCheck { seq });
                            true
                        }
                        Some(health::Tick::Terminate) => {
                            tracing::warn!(process_id = %st.id, "process failed {} health checks in a row", health::UNHEALTHY_THRESHOLD);
                            st.shared.begin_terminate(
                                p,
                                format!(
                                    "unhealthy: {} consecutive failed health checks",
                                    health::UNHEALTHY_THRESHOLD
                                ),
                                ExitReason::Unhealthy,
                            );
                            false
                        }
                        None => false,
                    }
                }
                _ => false,
            }
        };
        if keep_going {
            st.timer = Some(myself.send_after(st.shared.health_interval(), || ()));
        } else {
            myself.stop(None);
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ractor::ActorRef<()>,
        st: &mut HealthState,
    ) -> Result<(), ractor::ActorProcessingErr> {
        if let Some(t) = st.timer.take() {
            t.abort();
        }
        Ok(())
    }
}
