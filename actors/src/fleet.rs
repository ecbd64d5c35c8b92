//! One actor per fleet: it runs the placement policy whenever capacity or
//! demand changes and commits the assignments it chooses, and the
//! autoscaler ([`crate::autoscale::decide`]) every [`AUTOSCALE_EVERY`],
//! committing its decision when it changes anything. It supervises the
//! fleet's process and session actors.

use crate::autoscale::{decide, proc_facts, ScaleInput, FACTS_CHUNK};
use crate::policy::{plan_assignments, FleetView};
use crate::ports::{Deps, ProposeError};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use respawn_state::Command;
use respawn_types::agent::ServerToAgent;
use respawn_types::*;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Most assignments proposed in one round; the next round follows at once.
const MAX_ROUND: usize = 512;

/// How often the autoscaler looks at the fleet.
pub const AUTOSCALE_EVERY: Duration = Duration::from_millis(500);

pub struct FleetActor;

#[derive(Debug)]
pub enum FleetMsg {
    /// Capacity or demand may have changed: run the placement policy.
    Kick,
    /// The fleet's settings changed: tell its agents, then kick.
    Updated,
    /// An assignment proposal finished.
    AssignDone {
        placement: PlacementId,
        process: ProcessId,
        result: Result<(), ProposeError>,
    },
    /// Run the autoscaler.
    Autoscale,
    /// An autoscaler decision was committed (or not).
    AutoscaleDone { result: Result<(), ProposeError> },
    /// A change of the scale-in clock was committed (or not).
    ClockDone { result: Result<(), ProposeError> },
}

pub struct FleetState {
    id: FleetId,
    deps: Deps,
    in_flight_placements: HashSet<PlacementId>,
    in_flight_processes: HashMap<ProcessId, u32>,
    _ticker: tokio::task::JoinHandle<()>,
    _autoscale_ticker: tokio::task::JoinHandle<()>,
    /// An autoscaler decision is being committed.
    autoscaling: bool,
    /// A change of the scale-in clock is being committed.
    clock_in_flight: bool,
}

impl Actor for FleetActor {
    type Msg = FleetMsg;
    type State = FleetState;
    type Arguments = (FleetId, Deps);

    async fn pre_start(
        &self,
        myself: ActorRef<FleetMsg>,
        (id, deps): Self::Arguments,
    ) -> Result<FleetState, ActorProcessingErr> {
        // A safety net: agent links come and go without a log entry, so the
        // policy also runs once a second.
        let ticker = myself.send_interval(Duration::from_secs(1), || FleetMsg::Kick);
        let autoscale_ticker = myself.send_interval(AUTOSCALE_EVERY, || FleetMsg::Autoscale);
        Ok(FleetState {
            id,
            deps,
            in_flight_placements: HashSet::new(),
            in_flight_processes: HashMap::new(),
            _ticker: ticker,
            _autoscale_ticker: autoscale_ticker,
            autoscaling: false,
            clock_in_flight: false,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<FleetMsg>,
        _st: &mut FleetState,
    ) -> Result<(), ActorProcessingErr> {
        let _ = myself.cast(FleetMsg::Kick);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<FleetMsg>,
        msg: FleetMsg,
        st: &mut FleetState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            FleetMsg::Kick => kick(&myself, st),
            FleetMsg::Updated => {
                // Each host gets the fleet with its own process target.
                let per_host: Vec<(HostId, Fleet)> = st.deps.read(|s| {
                    s.hosts
                        .values()
                        .filter(|h| h.fleet_id == st.id)
                        .filter_map(|h| Some((h.id.clone(), s.fleet_for_host(&st.id, &h.id)?)))
                        .collect()
                });
                for (host, fleet) in per_host
                    .into_iter()
                    .filter(|(h, _)| st.deps.gateway.is_connected(h))
                {
                    let send = st
                        .deps
                        .gateway
                        .send(&host, ServerToAgent::FleetUpdated { fleet });
                    tokio::spawn(async move {
                        if let Err(e) = send.await {
                            tracing::warn!(%host, error = %e, "could not push fleet update");
                        }
                    });
                }
                kick(&myself, st);
            }
            FleetMsg::Autoscale => autoscale(&myself, st),
            FleetMsg::AutoscaleDone { result } => {
                st.autoscaling = false;
                if let Err(e) = result {
                    tracing::warn!(fleet = %st.id, error = %e, "could not commit an autoscaler decision");
                }
            }
            FleetMsg::ClockDone { result } => {
                st.clock_in_flight = false;
                if let Err(e) = result {
                    tracing::debug!(fleet = %st.id, error = %e, "could not commit the scale-in clock");
                }
            }
            FleetMsg::AssignDone {
                placement,
                process,
                result,
            } => {
                st.in_flight_placements.remove(&placement);
                if let Some(n) = st.in_flight_processes.get_mut(&process) {
                    *n -= 1;
                    if *n == 0 {
                        st.in_flight_processes.remove(&process);
                    }
                }
                match result {
                    Ok(()) => {}
                    Err(ProposeError::Rejected(r)) => {
                        // The state moved between planning and commit; plan again.
                        tracing::debug!(%placement, %process, %r, "assignment rejected");
                        kick(&myself, st);
                    }
                    Err(ProposeError::Unavailable(e)) => {
                        tracing::warn!(%placement, error = %e, "could not commit an assignment");
                        myself.send_after(Duration::from_millis(200), || FleetMsg::Kick);
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<FleetMsg>,
        evt: SupervisionEvent,
        st: &mut FleetState,
    ) -> Result<(), ActorProcessingErr> {
        // Children stop when their process or session is over; a failed child
        // is logged and rebuilt by the node on the next event that needs it.
        if let SupervisionEvent::ActorFailed(who, err) = evt {
            tracing::error!(fleet = %st.id, actor = ?who.get_id(), %err, "child actor failed");
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<FleetMsg>,
        st: &mut FleetState,
    ) -> Result<(), ActorProcessingErr> {
        st._ticker.abort();
        st._autoscale_ticker.abort();
        Ok(())
    }
}

fn kick(myself: &ActorRef<FleetMsg>, st: &mut FleetState) {
    // Asked before the read that plans: the gateway reads the state too.
    let connected = st.deps.connected_hosts();
    let plan = st.deps.read(|s| {
        let Some(fleet) = FleetView::of(s, &st.id) else {
            return Vec::new();
        };
        plan_assignments(
            fleet,
            &st.in_flight_placements,
            &st.in_flight_processes,
            |h| connected.contains(h),
            MAX_ROUND,
        )
    });
    for (placement, process) in plan {
        st.in_flight_placements.insert(placement.clone());
        *st.in_flight_processes.entry(process.clone()).or_default() += 1;
        let commands = st.deps.commands.clone();
        let me = myself.clone();
        tokio::spawn(async move {
            let result = commands
                .propose(Command::AssignPlacement {
                    placement_id: placement.clone(),
                    process_id: process.clone(),
                })
                .await
                .map(|_| ());
            let _ = me.cast(FleetMsg::AssignDone {
                placement,
                process,
                result,
            });
        });
    }
}

/// Runs the autoscaler and commits its decision when it changes targets or
/// stops processes (one decision in flight at a time), and the scale-in
/// clock when a surplus begins or ends (the clock is the committed one, so
/// a new leader goes on counting the same delay).
fn autoscale(myself: &ActorRef<FleetMsg>, st: &mut FleetState) {
    if st.autoscaling {
        return;
    }
    // Asked before the read: the gateway reads the state itself, and a
    // nested read can deadlock against a waiting apply.
    let connected = st.deps.connected_hosts();
    let now = now_millis();
    // The fleet's hosts, policy and committed scale-in clock in one short
    // read, its processes in chunks of `FACTS_CHUNK` (each a short read:
    // apply never waits for a scan of the whole fleet), and the decision
    // outside any read.
    let Some(input) = st
        .deps
        .read(|s| ScaleInput::header(s, &st.id, |h| connected.contains(h), now))
    else {
        return;
    };
    let mut processes = Vec::new();
    let mut after = None;
    loop {
        let (chunk, next) = st
            .deps
            .read(|s| proc_facts(s, &st.id, after.as_ref(), FACTS_CHUNK));
        processes.extend(chunk);
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let input = input.with(processes);
    let committed = input.targets.clone();
    let clock = input.surplus_since;
    let plan = decide(&input);
    if plan.surplus_since != clock && !st.clock_in_flight {
        st.clock_in_flight = true;
        let commands = st.deps.commands.clone();
        let me = myself.clone();
        let command = Command::SetScaleInClock {
            fleet_id: st.id.clone(),
            surplus_since: plan.surplus_since,
        };
        tokio::spawn(async move {
            let result = commands.propose(command).await.map(|_| ());
            let _ = me.cast(FleetMsg::ClockDone { result });
        });
    }
    if !plan.changes(&committed) {
        return;
    }
    tracing::info!(fleet = %st.id, action = ?plan.decision.action, reason = %plan.decision.reason, "autoscaler decision");
    st.autoscaling = true;
    let commands = st.deps.commands.clone();
    let me = myself.clone();
    let command = Command::Autoscale {
        fleet_id: st.id.clone(),
        targets: plan.targets,
        stop: plan.stop,
        decision: plan.decision,
    };
    tokio::spawn(async move {
        let result = commands.propose(command).await.map(|_| ());
        let _ = me.cast(FleetMsg::AutoscaleDone { result });
    });
}
