//! One actor per title region for its virtual servers, on the leader: it
//! places and retires instances, scales them to the load the edges report,
//! tells agents to start and stop them, delivers the region's event outbox
//! in order to `/pgos_event`, and fires its scheduled tasks at `/pgos_task`.
//! Every decision is a pure function of [`crate::vs_policy`]; the actor
//! keeps the timers and performs the effects through its ports. Everything
//! it decides is committed before it matters, so a new leader carries on
//! from the log.

use crate::ports::{Delivery, Deps};
use crate::vs_policy::*;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use respawn_types::agent::AgentReply;
use respawn_types::*;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// How often the actor re-plans, rescales and checks its timers.
const TICK: Duration = Duration::from_millis(250);

pub struct VsActor;

#[derive(Debug)]
pub enum VsMsg {
    /// Something changed: plan again, maybe deliver.
    Kick,
    /// An instance changed: start or stop it on its host.
    InstanceChanged {
        instance_id: VsInstanceId,
        host_id: HostId,
        status: VsInstanceStatus,
        removed: bool,
    },
    /// An agent runs an instance nobody knows: stop it.
    Orphan {
        instance_id: VsInstanceId,
        host_id: HostId,
    },
    PlanDone,
    EventDone {
        seq: u64,
        outcome: Delivery,
    },
    TaskDone {
        task: VsName,
    },
}

pub struct VsState {
    tr: TitleRegionId,
    deps: Deps,
    planning: bool,
    /// When the current scale was last needed, per VS.
    last_needed: HashMap<VsName, UnixMillis>,
    /// Last start/stop sent per instance.
    sent: HashMap<VsInstanceId, Instant>,
    /// Hosts seen disconnected, and since when.
    away: HashMap<HostId, Instant>,
    /// Where the outbox delivery stands.
    events: EventCursor,
    tasks_in_flight: HashSet<VsName>,
    _ticker: tokio::task::JoinHandle<()>,
}

impl Actor for VsActor {
    type Msg = VsMsg;
    type State = VsState;
    type Arguments = (TitleRegionId, Deps);

    async fn pre_start(
        &self,
        myself: ActorRef<VsMsg>,
        (tr, deps): Self::Arguments,
    ) -> Result<VsState, ActorProcessingErr> {
        let ticker = myself.send_interval(TICK, || VsMsg::Kick);
        Ok(VsState {
            tr,
            deps,
            planning: false,
            last_needed: HashMap::new(),
            sent: HashMap::new(),
            away: HashMap::new(),
            events: EventCursor::default(),
            tasks_in_flight: HashSet::new(),
            _ticker: ticker,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<VsMsg>,
        st: &mut VsState,
    ) -> Result<(), ActorProcessingErr> {
        // A new leader re-sends start/stop for instances in motion (agents
        // treat both as idempotent).
        let moving = st
            .deps
            .read(|s| moving_instances(s.vs_instances.values(), &st.tr));
        for (id, host, status) in moving {
            st.deliver_instance(&id, &host, status);
        }
        let _ = myself.cast(VsMsg::Kick);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<VsMsg>,
        msg: VsMsg,
        st: &mut VsState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            VsMsg::Kick => {
                st.track_hosts();
                st.rescale();
                if !st.planning {
                    st.plan(&myself);
                }
                st.resend();
                st.dispatch_event(&myself);
                st.fire_tasks(&myself);
            }
            VsMsg::PlanDone => {
                st.planning = false;
            }
            VsMsg::InstanceChanged {
                instance_id,
                host_id,
                status,
                removed,
            } => {
                let sent = st.sent.contains_key(&instance_id);
                match on_instance_changed(status, removed, sent) {
                    FollowUp::Send => st.deliver_instance(&instance_id, &host_id, status),
                    FollowUp::Forget => {
                        st.sent.remove(&instance_id);
                    }
                }
            }
            VsMsg::Orphan {
                instance_id,
                host_id,
            } => {
                st.deliver_instance(&instance_id, &host_id, VsInstanceStatus::Stopping);
            }
            VsMsg::EventDone { seq, outcome } => st.event_done(&myself, seq, outcome).await,
            VsMsg::TaskDone { task } => {
                st.tasks_in_flight.remove(&task);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<VsMsg>,
        st: &mut VsState,
    ) -> Result<(), ActorProcessingErr> {
        st._ticker.abort();
        Ok(())
    }
}

impl VsState {
    fn track_hosts(&mut self) {
        let hosts: Vec<HostId> = self.deps.read(|s| s.hosts.keys().cloned().collect());
        let gateway = &self.deps.gateway;
        track_away(
            &mut self.away,
            &hosts,
            |h| gateway.is_connected(h),
            Instant::now(),
        );
    }

    fn rescale(&mut self) {
        let load = self.deps.vs.load();
        let now = now_millis();
        let tr = &self.tr;
        let last_needed = &mut self.last_needed;
        let decisions = self.deps.read(|s| {
            rescale(
                s.virtual_servers
                    .get(tr)
                    .into_iter()
                    .flat_map(|m| m.values()),
                |vs| load.get(&(tr.clone(), vs.clone())).copied().unwrap_or(0),
                last_needed,
                now,
            )
        });
        for r in decisions {
            tracing::info!(title_region = %self.tr, vs = %r.vs, from = r.from, to = r.to, peak = r.peak, "autoscale");
            let commands = self.deps.commands.clone();
            let cmd = r.command(&self.tr);
            tokio::spawn(async move {
                if let Err(e) = commands.propose(cmd).await {
                    tracing::warn!(error = %e, "could not commit a scale decision");
                }
            });
        }
    }

    fn plan(&mut self, myself: &ActorRef<VsMsg>) {
        // Asked before the read that plans: the gateway reads the state too.
        let connected = self.deps.connected_hosts();
        let away = &self.away;
        let now = Instant::now();
        let plan = self.deps.read(|s| {
            plan_region(
                RegionView::of(s, &self.tr),
                |h| connected.contains(h),
                |h| host_lost(away.get(h).copied(), now),
            )
        });
        if plan.is_empty() {
            return;
        }
        self.planning = true;
        let commands = self.deps.commands.clone();
        let tr = self.tr.clone();
        let me = myself.clone();
        tokio::spawn(async move {
            for a in plan {
                let cmd = a.into_command(&tr, VsInstanceId::generate);
                if let Err(e) = commands.propose(cmd).await {
                    tracing::debug!(error = %e, "virtual server plan step not committed");
                }
            }
            let _ = me.cast(VsMsg::PlanDone);
        });
    }

    /// Re-sends start/stop that no report has answered.
    fn resend(&mut self) {
        for id in resend_due(&self.sent, Instant::now()) {
            match self.deps.read(|s| resend_to(s.vs_instances.get(&id))) {
                Some((host, status)) => self.deliver_instance(&id, &host, status),
                None => {
                    self.sent.remove(&id);
                }
            }
        }
    }

    fn deliver_instance(&mut self, id: &VsInstanceId, host: &HostId, status: VsInstanceStatus) {
        let site = self.deps.vs.site();
        let command = match self
            .deps
            .read(|s| instance_command(InstanceSpecView::of(s), id, status, &site))
        {
            Ok(Some(command)) => command,
            Ok(None) => {
                // Gone (the next re-send round forgets it) or waiting for
                // a managed storage to run: try again then.
                self.sent.insert(id.clone(), Instant::now());
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an instance spec");
                return;
            }
        };
        self.sent.insert(id.clone(), Instant::now());
        if !self.deps.gateway.is_connected(host) {
            return;
        }
        let send = self.deps.gateway.send(host, command);
        let (id, host) = (id.clone(), host.clone());
        tokio::spawn(async move {
            match send.await {
                Ok(AgentReply::Err(e)) => {
                    tracing::warn!(%id, %host, error = %e, "agent refused an instance command")
                }
                Err(e) => tracing::debug!(%id, %host, error = %e, "instance command not delivered"),
                _ => {}
            }
        });
    }

    fn dispatch_event(&mut self, myself: &ActorRef<VsMsg>) {
        let head = self
            .deps
            .read(|s| s.outbox.get(&self.tr).and_then(|q| q.front().cloned()));
        let Some(attempt) = self
            .events
            .start(head.as_ref().map(|h| h.seq), Instant::now())
        else {
            return;
        };
        let Some(head) = head else { return };
        let call = self.deps.vs.deliver(
            &self.tr,
            &head.vs,
            "/pgos_event",
            "event",
            event_body(&head),
            EVENT_TIMEOUT,
        );
        let me = myself.clone();
        let seq = head.seq;
        tracing::debug!(title_region = %self.tr, seq, attempt, trigger = %head.trigger_id, "delivering event");
        tokio::spawn(async move {
            let outcome = call.await;
            let _ = me.cast(VsMsg::EventDone { seq, outcome });
        });
    }

    async fn event_done(&mut self, myself: &ActorRef<VsMsg>, seq: u64, d: Delivery) {
        let head = self
            .deps
            .read(|s| s.outbox.get(&self.tr).and_then(|q| q.front().cloned()));
        let attempt = self.events.finished(seq, head.as_ref().map(|h| h.seq));
        let (Some(head), Some(attempt)) = (head, attempt) else {
            return;
        };
        let outcome = event_outcome(d.status, attempt);
        metrics::counter!("respawn_vs_event_deliveries_total",
            "title_region" => self.tr.to_string(), "vs" => head.vs.to_string(), "outcome" => outcome_label(outcome))
        .increment(1);
        let cmd = event_record(&self.tr, &head, attempt, outcome, d, now_millis());
        if let Err(e) = self.deps.commands.propose(cmd).await {
            tracing::warn!(error = %e, "could not record an event delivery");
            self.events.record_failed(Instant::now());
            return;
        }
        if self.events.recorded(seq, attempt, outcome, Instant::now()) {
            let _ = myself.cast(VsMsg::Kick);
        }
    }

    fn fire_tasks(&mut self, myself: &ActorRef<VsMsg>) {
        let now = now_millis();
        let due = self
            .deps
            .read(|s| due_tasks(s.tasks.get(&self.tr), &self.tasks_in_flight, now));
        for task in due {
            self.tasks_in_flight.insert(task.name.clone());
            let trigger_id = uuid::Uuid::now_v7().to_string();
            let call = self.deps.vs.deliver(
                &self.tr,
                &task.vs,
                "/pgos_task",
                "task",
                task_body(&trigger_id, &task, now),
                TASK_TIMEOUT,
            );
            let commands = self.deps.commands.clone();
            let tr = self.tr.clone();
            let me = myself.clone();
            tokio::spawn(async move {
                let d = call.await;
                let cmd = task_record(&tr, trigger_id, &task, now, d);
                if let Err(e) = commands.propose(cmd).await {
                    tracing::warn!(error = %e, "could not record a task firing");
                }
                let _ = me.cast(VsMsg::TaskDone { task: task.name });
            });
        }
    }
}
