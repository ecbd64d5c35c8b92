//! One actor per title region for its virtual servers, on the leader: it
//! places and retires instances ([`plan_region`]), scales them to the load
//! the edges report ([`autoscale`]), tells agents to start and stop them,
//! delivers the region's event outbox in order to `/pgos_event`, and fires
//! its scheduled tasks at `/pgos_task`. Everything it decides is committed
//! before it matters, so a new leader carries on from the log.

use crate::ports::Deps;
use crate::vs_policy::*;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use respawn_state::Command;
use respawn_types::agent::{AgentReply, ServerToAgent};
use respawn_types::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// How often the actor re-plans, rescales and checks its timers.
const TICK: Duration = Duration::from_millis(250);
/// A host away this long has its instances written off.
const HOST_LOST_AFTER: Duration = Duration::from_secs(15);
/// Start/stop commands not acknowledged by a report are re-sent this often.
const RESEND_AFTER: Duration = Duration::from_secs(5);
/// Time limits of seed §5.6.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(3);
pub const TASK_TIMEOUT: Duration = Duration::from_secs(10);

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

/// What one delivery attempt gave.
#[derive(Debug)]
pub struct Delivery {
    pub status: Option<u16>,
    pub response: String,
    pub latency_ms: u64,
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
    /// The outbox head in flight, its attempt count, and when to retry.
    event_in_flight: Option<u64>,
    attempts: BTreeMap<u64, u32>,
    retry_at: Option<Instant>,
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
            event_in_flight: None,
            attempts: BTreeMap::new(),
            retry_at: None,
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
        let moving: Vec<(VsInstanceId, HostId, VsInstanceStatus)> = st.deps.read(|s| {
            s.vs_instances
                .values()
                .filter(|i| {
                    i.title_region_id == st.tr
                        && matches!(
                            i.status,
                            VsInstanceStatus::Deploying | VsInstanceStatus::Stopping
                        )
                })
                .map(|i| (i.id.clone(), i.host_id.clone(), i.status))
                .collect()
        });
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
                let fresh =
                    status == VsInstanceStatus::Deploying && !st.sent.contains_key(&instance_id);
                if removed {
                    st.sent.remove(&instance_id);
                } else if status == VsInstanceStatus::Stopping || fresh {
                    st.deliver_instance(&instance_id, &host_id, status);
                } else {
                    // The agent reported on it: no need to re-send.
                    st.sent.remove(&instance_id);
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
        for h in hosts {
            if self.deps.gateway.is_connected(&h) {
                self.away.remove(&h);
            } else {
                self.away.entry(h).or_insert_with(Instant::now);
            }
        }
    }

    fn rescale(&mut self) {
        let load = self.deps.vs.load();
        let now = now_millis();
        let servers: Vec<VirtualServer> = self.deps.read(|s| {
            s.virtual_servers
                .get(&self.tr)
                .map(|m| {
                    m.values()
                        .filter(|v| v.desired == VsDesired::Running)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        });
        for vs in servers {
            let peak = load
                .get(&(self.tr.clone(), vs.name.clone()))
                .copied()
                .unwrap_or(0);
            let last = *self.last_needed.entry(vs.name.clone()).or_insert(now);
            let (scale, last) = autoscale(&vs, peak, last, now);
            self.last_needed.insert(vs.name.clone(), last);
            if let Some(scale) = scale {
                tracing::info!(title_region = %self.tr, vs = %vs.name, from = vs.scale, to = scale, peak, "autoscale");
                let proposer = self.deps.proposer.clone();
                let cmd = Command::ScaleVirtualServer {
                    title_region_id: self.tr.clone(),
                    name: vs.name.clone(),
                    scale,
                };
                tokio::spawn(async move {
                    if let Err(e) = proposer.propose(cmd).await {
                        tracing::warn!(error = %e, "could not commit a scale decision");
                    }
                });
            }
        }
    }

    fn plan(&mut self, myself: &ActorRef<VsMsg>) {
        let gateway = self.deps.gateway.clone();
        let away = &self.away;
        let plan = self.deps.read(|s| {
            plan_region(
                s,
                &self.tr,
                |h| gateway.is_connected(h),
                |h| away.get(h).is_some_and(|t| t.elapsed() >= HOST_LOST_AFTER),
            )
        });
        if plan.is_empty() {
            return;
        }
        self.planning = true;
        let proposer = self.deps.proposer.clone();
        let tr = self.tr.clone();
        let me = myself.clone();
        tokio::spawn(async move {
            for a in plan {
                let cmd = match a {
                    VsAction::Place { vs, version, host } => Command::PlaceVsInstance {
                        instance_id: VsInstanceId::generate(),
                        title_region_id: tr.clone(),
                        name: vs,
                        version,
                        host_id: host,
                    },
                    VsAction::Retire { instance, reason } => Command::RetireVsInstance {
                        instance_id: instance,
                        reason,
                    },
                };
                if let Err(e) = proposer.propose(cmd).await {
                    tracing::debug!(error = %e, "virtual server plan step not committed");
                }
            }
            let _ = me.cast(VsMsg::PlanDone);
        });
    }

    /// Re-sends start/stop that no report has answered.
    fn resend(&mut self) {
        let due: Vec<VsInstanceId> = self
            .sent
            .iter()
            .filter(|(_, t)| t.elapsed() >= RESEND_AFTER)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let cur = self.deps.read(|s| {
                s.vs_instances
                    .get(&id)
                    .map(|i| (i.host_id.clone(), i.status))
            });
            match cur {
                Some((
                    host,
                    status @ (VsInstanceStatus::Deploying | VsInstanceStatus::Stopping),
                )) => self.deliver_instance(&id, &host, status),
                _ => {
                    self.sent.remove(&id);
                }
            }
        }
    }

    fn deliver_instance(&mut self, id: &VsInstanceId, host: &HostId, status: VsInstanceStatus) {
        let command = if status == VsInstanceStatus::Stopping {
            ServerToAgent::StopVsInstance {
                instance_id: id.clone(),
            }
        } else {
            let Some(spec) = self
                .deps
                .read(|s| instance_spec(s, id, &self.deps.vs.site()))
            else {
                return;
            };
            match serde_json::to_string(&spec) {
                Ok(spec_json) => ServerToAgent::StartVsInstance { spec_json },
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode an instance spec");
                    return;
                }
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
        if self.event_in_flight.is_some() || self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let Some(head) = self
            .deps
            .read(|s| s.outbox.get(&self.tr).and_then(|q| q.front().cloned()))
        else {
            self.attempts.clear();
            return;
        };
        self.retry_at = None;
        self.event_in_flight = Some(head.seq);
        let attempt = {
            let a = self.attempts.entry(head.seq).or_insert(0);
            *a += 1;
            *a
        };
        // Forget attempt counts of events already gone.
        self.attempts.retain(|s, _| *s >= head.seq);
        let body = serde_json::json!({
            "trigger_id": head.trigger_id,
            "event_name": head.event_name,
            "event_time": head.event_time.to_string(),
            "event_data": serde_json::from_str::<serde_json::Value>(&head.event_data).unwrap_or_default(),
            "args": serde_json::from_str::<serde_json::Value>(&head.args).unwrap_or_default(),
        })
        .to_string();
        let call = self.deps.vs.deliver(
            &self.tr,
            &head.vs,
            "/pgos_event",
            "event",
            body.into_bytes(),
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
        self.event_in_flight = None;
        let Some(head) = self
            .deps
            .read(|s| s.outbox.get(&self.tr).and_then(|q| q.front().cloned()))
        else {
            return;
        };
        if head.seq != seq {
            return;
        }
        let attempt = self.attempts.get(&seq).copied().unwrap_or(1);
        let ok = d.status.is_some_and(|c| (200..300).contains(&c));
        let outcome = if ok {
            TriggerOutcome::Delivered
        } else if attempt >= EVENT_MAX_ATTEMPTS {
            TriggerOutcome::GaveUp
        } else {
            TriggerOutcome::Retrying
        };
        let outcome_label = match outcome {
            TriggerOutcome::Delivered => "delivered",
            TriggerOutcome::Retrying => "retrying",
            TriggerOutcome::GaveUp => "gave_up",
        };
        metrics::counter!("respawn_vs_event_deliveries_total",
            "title_region" => self.tr.to_string(), "vs" => head.vs.to_string(), "outcome" => outcome_label)
        .increment(1);
        let record = TriggerRecord {
            trigger_id: head.trigger_id.clone(),
            kind: TriggerKind::Event,
            name: head.event_name.clone(),
            vs: head.vs.clone(),
            at: now_millis(),
            attempt,
            status_code: d.status,
            response: d.response,
            latency_ms: d.latency_ms,
            outcome,
        };
        let pop = outcome != TriggerOutcome::Retrying;
        let cmd = Command::RecordTrigger {
            title_region_id: self.tr.clone(),
            record,
            pop_seq: pop.then_some(seq),
            task: None,
        };
        if let Err(e) = self.deps.proposer.propose(cmd).await {
            tracing::warn!(error = %e, "could not record an event delivery");
            self.retry_at = Some(Instant::now() + Duration::from_millis(200));
            return;
        }
        if pop {
            self.attempts.remove(&seq);
            let _ = myself.cast(VsMsg::Kick);
        } else {
            self.retry_at = Some(Instant::now() + retry_delay(attempt));
        }
    }

    fn fire_tasks(&mut self, myself: &ActorRef<VsMsg>) {
        let now = now_millis();
        let due: Vec<VsTask> = self.deps.read(|s| {
            s.tasks
                .get(&self.tr)
                .map(|m| {
                    m.values()
                        .filter(|t| next_task_fire(t).is_some_and(|at| at <= now))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        });
        for task in due {
            if !self.tasks_in_flight.insert(task.name.clone()) {
                continue;
            }
            let trigger_id = uuid::Uuid::now_v7().to_string();
            let body = serde_json::json!({
                "trigger_id": trigger_id,
                "task_name": task.name,
                "task_time": now.to_string(),
                "args": serde_json::from_str::<serde_json::Value>(&task.args).unwrap_or_default(),
            })
            .to_string();
            let call = self.deps.vs.deliver(
                &self.tr,
                &task.vs,
                "/pgos_task",
                "task",
                body.into_bytes(),
                TASK_TIMEOUT,
            );
            let proposer = self.deps.proposer.clone();
            let tr = self.tr.clone();
            let me = myself.clone();
            tokio::spawn(async move {
                let d = call.await;
                let ok = d.status.is_some_and(|c| (200..300).contains(&c));
                let record = TriggerRecord {
                    trigger_id,
                    kind: TriggerKind::Task,
                    name: task.name.to_string(),
                    vs: task.vs.clone(),
                    at: now,
                    attempt: 1,
                    status_code: d.status,
                    response: d.response,
                    latency_ms: d.latency_ms,
                    outcome: if ok {
                        TriggerOutcome::Delivered
                    } else {
                        TriggerOutcome::GaveUp
                    },
                };
                let cmd = Command::RecordTrigger {
                    title_region_id: tr,
                    record,
                    pop_seq: None,
                    task: Some(task.name.clone()),
                };
                if let Err(e) = proposer.propose(cmd).await {
                    tracing::warn!(error = %e, "could not record a task firing");
                }
                let _ = me.cast(VsMsg::TaskDone { task: task.name });
            });
        }
    }
}

/// Facts about this deployment that VS instances see as system variables.
#[derive(Clone, Debug, Default)]
pub struct Site {
    /// dev, test or release.
    pub region_type: String,
    /// Where the VS reaches the backend HTTP API (host[:port]).
    pub backend_api_domain: String,
    pub cloud_provider: String,
}

/// The spec an agent needs to run instance `id`, with seed §3.2's system variables.
pub fn instance_spec(
    s: &respawn_state::ClusterState,
    id: &VsInstanceId,
    site: &Site,
) -> Option<VsInstanceSpec> {
    let i = s.vs_instances.get(id)?;
    let vs = s.virtual_server(&i.title_region_id, &i.vs)?;
    let spec = vs
        .versions
        .iter()
        .find(|v| v.version == i.version)
        .map(|v| v.spec.clone())
        .unwrap_or_else(|| vs.spec.clone());
    let tr = s.title_regions.get(&i.title_region_id)?;
    let mut env = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        env.insert(k.to_string(), v.to_string());
    };
    put("PGOS_Title_ID", tr.title_id.as_str());
    put("PGOS_Title_Name", &tr.title_name);
    put("PGOS_Title_Region_ID", tr.id.as_str());
    put("PGOS_Title_Region_Name", &tr.name);
    put("PGOS_Title_Region_Type", &site.region_type);
    put("PGOS_Title_Region_Cloud_Provider", &site.cloud_provider);
    put(
        "PGOS_Title_Region_Backend_API_Domain",
        &site.backend_api_domain,
    );
    put("PGOS_Title_Region_CLI_API_Domain", &site.backend_api_domain);
    put("PGOS_VS_Name", i.vs.as_str());
    put("PGOS_VS_Version", &i.version.to_string());
    put("PGOS_VS_Instance_ID", i.id.as_str());
    Some(VsInstanceSpec {
        instance_id: i.id.clone(),
        title_region_id: i.title_region_id.clone(),
        vs: i.vs.clone(),
        version: i.version,
        spec,
        system_env: env,
    })
}
