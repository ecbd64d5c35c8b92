//! The root actor of a server node: it receives the events that each
//! committed command produced, in log order, and routes them to the actors
//! of the title regions' virtual servers, fleets, processes and battle
//! sessions concerned, spawning those that do not exist yet. It supervises
//! the fleet and VS actors and the session timers; fleets supervise their
//! process actors. Actor references are held here, in
//! plain maps: the global ractor registry is never used, so several nodes can
//! run in one process.

use crate::fleet::{FleetActor, FleetMsg};
use crate::ports::Deps;
use crate::process::{Notice, ProcessActor, ProcessMsg};
use crate::session::{SessionMsg, SessionTimers};
use crate::vs::{VsActor, VsMsg};
use crate::ActorsError;
use ractor::{Actor, ActorProcessingErr, ActorRef, ActorStatus, SupervisionEvent};
use respawn_state::{ClusterState, Event};
use respawn_types::*;
use std::collections::{HashMap, HashSet};
use tokio::sync::mpsc::UnboundedReceiver;

pub struct NodeActor;

#[derive(Debug)]
pub enum NodeMsg {
    /// Events of the entry at this log index.
    Events(u64, Vec<Event>),
    /// Run the placement policy of every fleet (an agent link came up, say).
    KickFleets,
}

pub struct NodeState {
    deps: Deps,
    fleets: HashMap<FleetId, ActorRef<FleetMsg>>,
    processes: HashMap<ProcessId, ActorRef<ProcessMsg>>,
    /// The timeouts of every PENDING or ACTIVATING battle session.
    timers: Option<ActorRef<SessionMsg>>,
    /// Virtual-server actors, one per title region.
    vs: HashMap<TitleRegionId, ActorRef<VsMsg>>,
    /// Fleets to kick once the events of the entry being routed are done:
    /// one kick plans every waiting placement, so an entry with many new
    /// placements of a fleet kicks it once (at most one per fleet).
    kicks: HashSet<FleetId>,
}

/// The running actor system of one node.
pub struct Runtime {
    pub node: ActorRef<NodeMsg>,
    forward: tokio::task::JoinHandle<()>,
}

impl Runtime {
    /// Stops every actor of this node.
    pub fn stop(&self) {
        self.forward.abort();
        self.node.stop_children(None);
        self.node.stop(None);
    }
}

/// Builds the actors from `state` (the state at the moment events went
/// live) and feeds them every later event from `events`.
pub async fn start_runtime(
    deps: Deps,
    mut events: UnboundedReceiver<(u64, Vec<Event>)>,
) -> Result<Runtime, ActorsError> {
    let (node, _) = Actor::spawn(None, NodeActor, deps)
        .await
        .map_err(|e| ActorsError::Spawn(e.to_string()))?;
    let target = node.clone();
    let forward = tokio::spawn(async move {
        while let Some((index, evs)) = events.recv().await {
            if target.cast(NodeMsg::Events(index, evs)).is_err() {
                break;
            }
        }
    });
    Ok(Runtime { node, forward })
}

impl Actor for NodeActor {
    type Msg = NodeMsg;
    type State = NodeState;
    type Arguments = Deps;

    async fn pre_start(
        &self,
        _myself: ActorRef<NodeMsg>,
        deps: Deps,
    ) -> Result<NodeState, ActorProcessingErr> {
        Ok(NodeState {
            deps,
            fleets: HashMap::new(),
            processes: HashMap::new(),
            timers: None,
            vs: HashMap::new(),
            kicks: HashSet::new(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<NodeMsg>,
        st: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        // Rebuild from committed state: every fleet, every process that has
        // not exited, the timers of every session PENDING or ACTIVATING.
        // Timers re-arm from the committed deadlines.
        let (fleets, processes, sessions) = st.deps.read(|s: &ClusterState| {
            let fleets: Vec<FleetId> = s.fleets.keys().cloned().collect();
            let processes: Vec<ProcessId> = s
                .processes
                .values()
                .map(|r| &**r)
                .filter(|p| p.status != ProcessStatus::Exited)
                .map(|p| p.id.clone())
                .collect();
            let sessions = s
                .battle_sessions
                .values()
                .map(|r| &**r)
                .filter(|b| needs_actor(b.status))
                .count();
            (fleets, processes, sessions)
        });
        tracing::info!(
            fleets = fleets.len(),
            processes = processes.len(),
            sessions,
            "rebuilding actors from committed state"
        );
        let regions: Vec<TitleRegionId> =
            st.deps.read(|s| s.title_regions.keys().cloned().collect());
        for r in regions {
            st.vs_region(&myself, &r).await;
        }
        for f in fleets {
            st.fleet(&myself, &f).await;
        }
        for p in processes {
            crate::process::resend_after_restart(&st.deps, &p);
            st.process(&myself, &p).await;
        }
        st.timers(&myself).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<NodeMsg>,
        msg: NodeMsg,
        st: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NodeMsg::Events(_, events) => {
                for e in events {
                    st.route(&myself, e).await;
                }
                for f in std::mem::take(&mut st.kicks) {
                    if let Some(f) = st.fleets.get(&f) {
                        let _ = f.cast(FleetMsg::Kick);
                    }
                }
            }
            NodeMsg::KickFleets => {
                for f in st.fleets.values() {
                    let _ = f.cast(FleetMsg::Kick);
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<NodeMsg>,
        evt: SupervisionEvent,
        _st: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(who, err) = evt {
            tracing::error!(actor = ?who.get_id(), %err, "fleet or virtual server actor failed");
        }
        Ok(())
    }
}

fn alive<M>(r: &ActorRef<M>) -> bool {
    !matches!(r.get_status(), ActorStatus::Stopped | ActorStatus::Stopping)
}

impl NodeState {
    async fn route(&mut self, myself: &ActorRef<NodeMsg>, e: Event) {
        match e {
            Event::TitleRegionPut { title_region_id } => {
                self.vs_region(myself, &title_region_id).await;
            }
            Event::VsChanged {
                title_region_id, ..
            }
            | Event::OutboxAppended { title_region_id }
            | Event::TriggersChanged { title_region_id } => {
                if let Some(a) = self.vs_region(myself, &title_region_id).await {
                    let _ = a.cast(VsMsg::Kick);
                }
            }
            Event::VsInstanceChanged {
                instance_id,
                host_id,
                status,
                removed,
            } => {
                let tr = self.deps.read(|s| {
                    s.vs_instances
                        .get(&instance_id)
                        .map(|i| i.title_region_id.clone())
                });
                // A removed instance's region is unknown now: tell every region actor.
                let targets: Vec<ActorRef<VsMsg>> = match tr {
                    Some(tr) => self.vs_region(myself, &tr).await.into_iter().collect(),
                    None => self.vs.values().cloned().collect(),
                };
                for a in targets {
                    let _ = a.cast(VsMsg::InstanceChanged {
                        instance_id: instance_id.clone(),
                        host_id: host_id.clone(),
                        status,
                        removed,
                    });
                    let _ = a.cast(VsMsg::Kick);
                }
            }
            Event::VsInstanceOrphaned {
                instance_id,
                host_id,
            } => {
                if let Some(a) = self.vs.values().next() {
                    let _ = a.cast(VsMsg::Orphan {
                        instance_id,
                        host_id,
                    });
                }
            }
            Event::FleetPut { fleet_id } | Event::ProcessTargetsChanged { fleet_id } => {
                if let Some(f) = self.fleet(myself, &fleet_id).await {
                    let _ = f.cast(FleetMsg::Updated);
                }
            }
            Event::ProcessChanged { process_id, status } => {
                if status == ProcessStatus::Exited {
                    if let Some(p) = self.processes.remove(&process_id) {
                        let _ = p.cast(ProcessMsg::Changed);
                    }
                } else {
                    self.send_to_process(myself, &process_id, ProcessMsg::Changed)
                        .await;
                }
                if matches!(status, ProcessStatus::Ready) {
                    self.kick_fleet_of_process(&process_id);
                }
            }
            Event::PlacementCreated { placement_id, .. } => {
                let bs = self.deps.read(|s| {
                    s.placements
                        .get(&placement_id)
                        .map(|p| p.battle_session_id.clone())
                });
                if let Some(bs) = bs {
                    self.session_changed(myself, bs).await;
                }
            }
            Event::PlacementNeedsProcess { fleet_id, .. } => {
                self.kicks.insert(fleet_id);
            }
            Event::SessionAssigned {
                battle_session_id,
                process_id,
            } => {
                self.send_to_process(
                    myself,
                    &process_id,
                    ProcessMsg::StartSession(battle_session_id.clone()),
                )
                .await;
                self.session_changed(myself, battle_session_id).await;
            }
            Event::SessionActivated {
                battle_session_id, ..
            } => {
                // ACTIVE: nothing left to time; the timers forget it.
                self.session_changed(myself, battle_session_id).await;
            }
            Event::SessionRevoked {
                battle_session_id,
                process_id,
            } => {
                self.send_to_process(
                    myself,
                    &process_id,
                    ProcessMsg::RevokeSession(battle_session_id.clone()),
                )
                .await;
                self.session_changed(myself, battle_session_id).await;
            }
            Event::SessionTerminated { battle_session_id } => {
                self.session_changed(myself, battle_session_id.clone())
                    .await;
                // A parallel-mode process may have a free slot now.
                let fleet = self.deps.read(|s| {
                    s.battle_sessions
                        .get(&battle_session_id)
                        .map(|b| b.fleet_id.clone())
                });
                self.kicks.extend(fleet);
            }
            Event::PlacementFinished { status, .. } => {
                metrics::counter!("respawn_placements_finished_total", "status" => format!("{status:?}"))
                    .increment(1);
            }
            Event::PlayerChanged { .. } => {}
            Event::PlayersAdded { battle_session_id } => {
                self.notify_holder(myself, &battle_session_id, Notice::Updated)
                    .await;
            }
            Event::PlayersTerminated {
                battle_session_id,
                player_battle_session_ids,
            } => {
                self.notify_holder(
                    myself,
                    &battle_session_id,
                    Notice::PlayersTerminated(player_battle_session_ids),
                )
                .await;
            }
            Event::FleetDeleted { fleet_id } => {
                if let Some(f) = self.fleets.remove(&fleet_id) {
                    f.stop(Some("fleet deleted".into()));
                }
            }
            Event::HostDraining { host_id, .. } => {
                // The host's launch target changes with its drain (0 while
                // draining): its agent is told at once, and placement and
                // the autoscaler look again.
                let fleet_id = self
                    .deps
                    .read(|s| s.hosts.get(&host_id).map(|h| h.fleet_id.clone()));
                if let Some(fleet_id) = fleet_id {
                    if let Some(f) = self.fleet(myself, &fleet_id).await {
                        let _ = f.cast(FleetMsg::Updated);
                    }
                }
                for f in self.fleets.values() {
                    let _ = f.cast(FleetMsg::Kick);
                }
                for a in self.vs.values() {
                    let _ = a.cast(VsMsg::Kick);
                }
            }
            Event::HostLinked { .. } => {
                // Capacity on that host may be reachable (or gone) now.
                for f in self.fleets.values() {
                    let _ = f.cast(FleetMsg::Kick);
                }
                for a in self.vs.values() {
                    let _ = a.cast(VsMsg::Kick);
                }
            }
        }
    }

    async fn vs_region(
        &mut self,
        myself: &ActorRef<NodeMsg>,
        tr: &TitleRegionId,
    ) -> Option<ActorRef<VsMsg>> {
        if let Some(a) = self.vs.get(tr).filter(|a| alive(a)) {
            return Some(a.clone());
        }
        if !self.deps.read(|s| s.title_regions.contains_key(tr)) {
            return None;
        }
        match Actor::spawn_linked(
            None,
            VsActor,
            (tr.clone(), self.deps.clone()),
            myself.get_cell(),
        )
        .await
        {
            Ok((a, _)) => {
                self.vs.insert(tr.clone(), a.clone());
                Some(a)
            }
            Err(e) => {
                tracing::error!(title_region = %tr, error = %e, "cannot start the virtual server actor");
                None
            }
        }
    }

    fn kick_fleet_of_process(&mut self, process_id: &ProcessId) {
        let fleet = self
            .deps
            .read(|s| s.processes.get(process_id).map(|p| p.fleet_id.clone()));
        self.kicks.extend(fleet);
    }

    async fn session_changed(&mut self, myself: &ActorRef<NodeMsg>, id: BattleSessionId) {
        if let Some(t) = self.timers(myself).await {
            let _ = t.cast(SessionMsg::Changed(id));
        }
    }

    async fn fleet(
        &mut self,
        myself: &ActorRef<NodeMsg>,
        id: &FleetId,
    ) -> Option<ActorRef<FleetMsg>> {
        if let Some(f) = live(&self.fleets, id) {
            return Some(f);
        }
        if !self.deps.read(|s| s.fleets.contains_key(id)) {
            return None;
        }
        let args = (id.clone(), self.deps.clone());
        let f = spawn_child(FleetActor, args, myself.get_cell(), id).await?;
        self.fleets.insert(id.clone(), f.clone());
        Some(f)
    }

    /// Hands a notification about a battle session to the actor of the
    /// process holding it (none while it waits for a process).
    async fn notify_holder(
        &mut self,
        myself: &ActorRef<NodeMsg>,
        battle_session_id: &BattleSessionId,
        notice: Notice,
    ) {
        let holder = self.deps.read(|s| {
            s.battle_sessions
                .get(battle_session_id)
                .and_then(|b| b.process_id.clone())
        });
        if let Some(pid) = holder {
            self.send_to_process(
                myself,
                &pid,
                ProcessMsg::Notify(battle_session_id.clone(), notice),
            )
            .await;
        }
    }

    /// Hands `msg` to process `id`: to its actor if it has or needs one
    /// (ENDING, TERMINATING), else at once without one (LAUNCHING, READY;
    /// see `crate::process`).
    async fn send_to_process(
        &mut self,
        myself: &ActorRef<NodeMsg>,
        id: &ProcessId,
        msg: ProcessMsg,
    ) {
        match self.process(myself, id).await {
            Some(p) => {
                let _ = p.cast(msg);
            }
            None => crate::process::handle_without_actor(&self.deps, id, msg),
        }
    }

    /// The actor of process `id`, started if the process needs one (it is
    /// ENDING or TERMINATING).
    async fn process(
        &mut self,
        myself: &ActorRef<NodeMsg>,
        id: &ProcessId,
    ) -> Option<ActorRef<ProcessMsg>> {
        if let Some(p) = live(&self.processes, id) {
            return Some(p);
        }
        let fleet_id = self.deps.read(|s| {
            s.processes
                .get(id)
                .filter(|p| crate::process::needs_actor(p.status))
                .map(|p| p.fleet_id.clone())
        })?;
        let fleet = self.fleet(myself, &fleet_id).await?;
        let args = (id.clone(), self.deps.clone());
        let p = spawn_child(ProcessActor, args, fleet.get_cell(), id).await?;
        self.processes.insert(id.clone(), p.clone());
        Some(p)
    }

    /// The session timers, started (again, with every session that has a
    /// deadline) if they are not running.
    async fn timers(&mut self, myself: &ActorRef<NodeMsg>) -> Option<ActorRef<SessionMsg>> {
        if let Some(t) = self.timers.as_ref().filter(|t| alive(t)) {
            return Some(t.clone());
        }
        let sessions = self.deps.read(timed_sessions);
        let args = (sessions, self.deps.clone());
        let t = spawn_child(SessionTimers, args, myself.get_cell(), &"session timers").await?;
        self.timers = Some(t.clone());
        Some(t)
    }
}

/// The battle sessions with deadlines to keep.
fn timed_sessions(s: &ClusterState) -> Vec<BattleSessionId> {
    s.battle_sessions
        .values()
        .filter(|b| needs_actor(b.status))
        .map(|b| b.id.clone())
        .collect()
}

/// Whether a battle session in `status` has deadlines for the timers to
/// keep (PENDING, ACTIVATING; see `crate::policy::session_due`).
fn needs_actor(status: BattleSessionStatus) -> bool {
    matches!(
        status,
        BattleSessionStatus::Pending | BattleSessionStatus::Activating
    )
}

/// The running actor for `key`, if there is one.
fn live<K: std::hash::Hash + Eq, M>(map: &HashMap<K, ActorRef<M>>, key: &K) -> Option<ActorRef<M>> {
    map.get(key).filter(|r| alive(r)).cloned()
}

/// Spawns an actor (unnamed: never in the global registry) under `supervisor`.
async fn spawn_child<A: Actor>(
    handler: A,
    args: A::Arguments,
    supervisor: ractor::ActorCell,
    key: &(dyn std::fmt::Display + Sync),
) -> Option<ActorRef<A::Msg>> {
    match Actor::spawn_linked(None, handler, args, supervisor).await {
        Ok((r, _)) => Some(r),
        Err(e) => {
            tracing::error!(actor = %key, error = %e, "cannot spawn actor");
            None
        }
    }
}
