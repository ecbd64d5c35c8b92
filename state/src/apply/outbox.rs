//! Event handlers, tasks, the per-title-region event outbox and the trigger
//! log: battle-session events become PGOS events for the handlers bound to
//! them, and each delivery attempt is recorded.

use crate::cluster_state::ClusterState;
use crate::command::*;
use respawn_types::limits::TEXT_LIMIT;
use respawn_types::text::clip_with_ellipsis;
use respawn_types::*;
use std::collections::BTreeSet;

fn check_json_object(what: &str, s: &str) -> Result<(), Rejection> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        _ => Err(Rejection::bad_request(format!(
            "{what} must be a JSON object"
        ))),
    }
}

/// The trigger id of a title region's `seq`-th event, committed at `at`: a
/// UUID (version 8) made of a hash of the title region and the commit time,
/// then the sequence number. Every node computes the same id; no two events
/// of a title region share one; and another cluster (or a fresh data
/// directory) does not reuse the ids of this one, since its events are
/// committed at other times.
fn trigger_id(tr: &TitleRegionId, at: UnixMillis, seq: u64) -> String {
    let h = fnv1a64(tr.as_str().bytes().chain(at.to_be_bytes()));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&h.to_be_bytes());
    bytes[8..].copy_from_slice(&seq.to_be_bytes());
    uuid::Uuid::new_v8(bytes).to_string()
}

impl ClusterState {
    /// `PutEventHandler`, `DeleteEventHandler`, `PutTask`, `DeleteTask`, `RecordTrigger`.
    pub(super) fn apply_trigger(
        &mut self,
        at: UnixMillis,
        cmd: &Command,
        ev: &mut Vec<Event>,
    ) -> Response {
        match cmd {
            Command::PutEventHandler(h) => {
                self.title_region(&h.title_region_id)?;
                if self.virtual_server(&h.title_region_id, &h.vs).is_none() {
                    return Err(Rejection::not_found("virtual server", &h.vs));
                }
                check_json_object("args", &h.args)?;
                for e in &h.events {
                    if !VS_EVENT_NAMES.contains(&e.as_str()) {
                        return Err(Rejection::bad_request(format!(
                            "unknown event '{e}'; known events: {}",
                            VS_EVENT_NAMES.join(", ")
                        )));
                    }
                }
                let m = self
                    .event_handlers
                    .entry(h.title_region_id.clone())
                    .or_default();
                if m.get(&h.name) == Some(h) {
                    return Ok(Applied::Unchanged);
                }
                m.insert(h.name.clone(), h.clone());
                ev.push(Event::TriggersChanged {
                    title_region_id: h.title_region_id.clone(),
                });
                Ok(Applied::Done)
            }
            Command::DeleteEventHandler {
                title_region_id,
                name,
            } => {
                let removed = self
                    .event_handlers
                    .get_mut(title_region_id)
                    .and_then(|m| m.remove(name));
                if removed.is_none() {
                    return Err(Rejection::not_found("event handler", name));
                }
                ev.push(Event::TriggersChanged {
                    title_region_id: title_region_id.clone(),
                });
                Ok(Applied::Done)
            }
            Command::PutTask {
                title_region_id,
                name,
                vs,
                schedule,
                args,
                enabled,
            } => {
                self.title_region(title_region_id)?;
                if self.virtual_server(title_region_id, vs).is_none() {
                    return Err(Rejection::not_found("virtual server", vs));
                }
                check_json_object("args", args)?;
                match schedule {
                    TaskSchedule::Interval { secs } if *secs == 0 || *secs > 31_536_000 => {
                        return Err(Rejection::bad_request(
                            "interval secs must be between 1 and 31536000",
                        ))
                    }
                    TaskSchedule::Cron { expr } => {
                        let c = respawn_types::cron::CronSchedule::parse(expr)
                            .map_err(|e| Rejection::bad_request(format!("cron: {e}")))?;
                        if c.next_after(at).is_none() {
                            return Err(Rejection::bad_request(format!(
                                "cron '{expr}' never fires"
                            )));
                        }
                    }
                    _ => {}
                }
                let m = self.tasks.entry(title_region_id.clone()).or_default();
                let (created_at, last_fired_at) = m
                    .get(name)
                    .map(|t| (t.created_at, t.last_fired_at))
                    .unwrap_or((at, None));
                m.insert(
                    name.clone(),
                    VsTask {
                        title_region_id: title_region_id.clone(),
                        name: name.clone(),
                        vs: vs.clone(),
                        schedule: schedule.clone(),
                        args: args.clone(),
                        enabled: *enabled,
                        last_fired_at,
                        created_at,
                    },
                );
                ev.push(Event::TriggersChanged {
                    title_region_id: title_region_id.clone(),
                });
                Ok(Applied::Done)
            }
            Command::DeleteTask {
                title_region_id,
                name,
            } => {
                let removed = self
                    .tasks
                    .get_mut(title_region_id)
                    .and_then(|m| m.remove(name));
                if removed.is_none() {
                    return Err(Rejection::not_found("task", name));
                }
                ev.push(Event::TriggersChanged {
                    title_region_id: title_region_id.clone(),
                });
                Ok(Applied::Done)
            }
            Command::RecordTrigger {
                title_region_id,
                record,
                pop_seq,
                task,
            } => {
                self.title_region(title_region_id)?;
                if let Some(seq) = pop_seq {
                    let q = self.outbox.get_mut(title_region_id);
                    match q {
                        Some(q) if q.front().map(|e| e.seq) == Some(*seq) => {
                            q.pop_front();
                            if q.is_empty() {
                                self.outbox.remove(title_region_id);
                            }
                        }
                        // Already popped (a retry of this command): log nothing twice.
                        _ => return Ok(Applied::Unchanged),
                    }
                }
                if let Some(t) = task {
                    if let Some(t) = self
                        .tasks
                        .get_mut(title_region_id)
                        .and_then(|m| m.get_mut(t))
                    {
                        t.last_fired_at = Some(record.at);
                    }
                }
                let mut r = record.clone();
                r.response = clip_with_ellipsis(&r.response, TEXT_LIMIT);
                let log = self.trigger_log.entry(title_region_id.clone()).or_default();
                log.push_back(r);
                while log.len() > TRIGGER_LOG_KEPT {
                    log.pop_front();
                }
                if pop_seq.is_some() {
                    // The next event may go.
                    ev.push(Event::OutboxAppended {
                        title_region_id: title_region_id.clone(),
                    });
                }
                Ok(Applied::Done)
            }
            // The dispatch in `apply` sends only this family here.
            _ => Err(Rejection::bad_request(
                "not an event handler, task or trigger command",
            )),
        }
    }

    /// Turns battle-session events into PGOS events for the title regions
    /// that bound handlers to them, appended to their outboxes in order.
    pub(super) fn emit_pgos_events(&mut self, at: UnixMillis, events: &mut Vec<Event>) {
        if self.event_handlers.is_empty() {
            return;
        }
        let mut out: Vec<(TitleRegionId, &'static str, serde_json::Value)> = Vec::new();
        for e in events.iter() {
            match e {
                Event::PlacementFinished {
                    placement_id,
                    status,
                } => {
                    let Some(p) = self.placements.get(placement_id) else {
                        continue;
                    };
                    let name = match status {
                        PlacementStatus::Fulfilled => "event_battle_session_placement_fulfilled",
                        PlacementStatus::TimedOut => "event_battle_session_placement_timedout",
                        PlacementStatus::Failed => "event_battle_session_placement_failed",
                        _ => continue,
                    };
                    let s = self.battle_sessions.get(&p.battle_session_id);
                    out.push((
                        p.title_region_id.clone(),
                        name,
                        serde_json::json!({
                            "placement_id": p.id,
                            "battle_session_id": p.battle_session_id,
                            "fleet_id": p.fleet_id,
                            "status": status,
                            "reason": p.reason,
                            "ip": s.and_then(|s| s.ip.clone()),
                            "port": s.and_then(|s| s.port),
                        }),
                    ));
                }
                Event::SessionActivated {
                    battle_session_id, ..
                }
                | Event::SessionTerminated { battle_session_id } => {
                    let Some(s) = self.battle_sessions.get(battle_session_id) else {
                        continue;
                    };
                    let name = if matches!(e, Event::SessionActivated { .. }) {
                        "event_battle_session_started"
                    } else {
                        "event_battle_session_ended"
                    };
                    out.push((
                        s.title_region_id.clone(),
                        name,
                        serde_json::json!({
                            "battle_session_id": s.id,
                            "placement_id": s.placement_id,
                            "fleet_id": s.fleet_id,
                            "process_id": s.process_id,
                            "ip": s.ip,
                            "port": s.port,
                            "reason": s.termination_reason,
                        }),
                    ));
                }
                Event::PlayerChanged {
                    player_battle_session_id,
                    status,
                } => {
                    let name = match status {
                        PlayerBattleSessionStatus::Active => "event_player_joined_battle_session",
                        PlayerBattleSessionStatus::Completed
                        | PlayerBattleSessionStatus::Disconnected => {
                            "event_player_left_battle_session"
                        }
                        _ => continue,
                    };
                    let Some(p) = self.player_battle_sessions.get(player_battle_session_id) else {
                        continue;
                    };
                    out.push((
                        p.title_region_id.clone(),
                        name,
                        serde_json::json!({
                            "player_id": p.player_id,
                            "player_battle_session_id": p.id,
                            "battle_session_id": p.battle_session_id,
                            "status": status,
                        }),
                    ));
                }
                _ => {}
            }
        }
        let mut touched = BTreeSet::new();
        for (tr, name, data) in out {
            let Some(handlers) = self.event_handlers.get(&tr) else {
                continue;
            };
            let targets: Vec<(VsName, VsName, String)> = handlers
                .values()
                .filter(|h| h.events.is_empty() || h.events.iter().any(|e| e == name))
                .map(|h| (h.name.clone(), h.vs.clone(), h.args.clone()))
                .collect();
            for (handler, vs, args) in targets {
                let seq = self.outbox_seq.entry(tr.clone()).or_default();
                *seq += 1;
                let seq = *seq;
                let q = self.outbox.entry(tr.clone()).or_default();
                q.push_back(OutboxEvent {
                    seq,
                    trigger_id: trigger_id(&tr, at, seq),
                    handler,
                    vs,
                    event_name: name.to_string(),
                    event_time: at,
                    event_data: data.to_string(),
                    args,
                });
                if q.len() > OUTBOX_LIMIT {
                    q.pop_front();
                }
                touched.insert(tr.clone());
            }
        }
        for tr in touched {
            events.push(Event::OutboxAppended {
                title_region_id: tr,
            });
        }
    }
}

#[cfg(test)]
mod tests;
