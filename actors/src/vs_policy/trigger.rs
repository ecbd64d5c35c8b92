//! Events and scheduled tasks delivered to virtual servers: the request
//! bodies, which tasks are due ([`next_task_fire`]), how a delivery ends
//! (delivered, retrying, gave up) and how it is recorded, and the order and
//! pace of the outbox's deliveries ([`EventCursor`], [`event_retry_delay`]).

use crate::ports::Delivery;
use respawn_state::Command;
use respawn_types::backoff::capped_exponential;
use respawn_types::cron::CronSchedule;
use respawn_types::*;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// Time limits of seed §5.6.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(3);
pub const TASK_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts of one event before it is given up (logged as such).
pub const EVENT_MAX_ATTEMPTS: u32 = 8;

/// Wait before the next delivery when an outcome could not be committed.
pub const RECORD_RETRY: Duration = Duration::from_millis(200);

/// Wait before attempt `attempt + 1` after `attempt` failed: 500 ms doubling, at most 30 s.
pub fn event_retry_delay(attempt: u32) -> Duration {
    capped_exponential(
        Duration::from_millis(500),
        Duration::from_secs(30),
        attempt.saturating_sub(1),
    )
}

/// When a task fires next: an interval counts from its last firing (or its
/// creation); a cron schedule gives the first match after that. A task that
/// missed firings while no leader ran fires once, not once per miss.
pub fn next_task_fire(task: &VsTask) -> Option<UnixMillis> {
    if !task.enabled {
        return None;
    }
    let from = task.last_fired_at.unwrap_or(task.created_at);
    match &task.schedule {
        TaskSchedule::Interval { secs } => Some(from.saturating_add(secs.saturating_mul(1000))),
        TaskSchedule::Cron { expr } => CronSchedule::parse(expr).ok()?.next_after(from),
    }
}

/// The tasks of a region (`tasks`) due at `now` and not already firing.
pub fn due_tasks(
    tasks: Option<&BTreeMap<VsName, VsTask>>,
    firing: &HashSet<VsName>,
    now: UnixMillis,
) -> Vec<VsTask> {
    tasks
        .into_iter()
        .flat_map(|m| m.values())
        .filter(|t| !firing.contains(&t.name))
        .filter(|t| next_task_fire(t).is_some_and(|at| at <= now))
        .cloned()
        .collect()
}

/// A JSON text field parsed for a request body (null when it is not JSON).
fn json_field(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_default()
}

/// The `/pgos_event` request body of an outbox event.
pub fn event_body(e: &OutboxEvent) -> Vec<u8> {
    serde_json::json!({
        "trigger_id": e.trigger_id,
        "event_name": e.event_name,
        "event_time": e.event_time.to_string(),
        "event_data": json_field(&e.event_data),
        "args": json_field(&e.args),
    })
    .to_string()
    .into_bytes()
}

/// The `/pgos_task` request body of a task firing at `now`.
pub fn task_body(trigger_id: &str, task: &VsTask, now: UnixMillis) -> Vec<u8> {
    serde_json::json!({
        "trigger_id": trigger_id,
        "task_name": task.name,
        "task_time": now.to_string(),
        "args": json_field(&task.args),
    })
    .to_string()
    .into_bytes()
}

/// A delivery the VS answered with a 2xx status.
pub fn delivered(status: Option<u16>) -> bool {
    status.is_some_and(|c| (200..300).contains(&c))
}

/// How attempt `attempt` of an event ended.
pub fn event_outcome(status: Option<u16>, attempt: u32) -> TriggerOutcome {
    if delivered(status) {
        TriggerOutcome::Delivered
    } else if attempt >= EVENT_MAX_ATTEMPTS {
        TriggerOutcome::GaveUp
    } else {
        TriggerOutcome::Retrying
    }
}

/// The `outcome` label of the delivery metrics.
pub fn outcome_label(outcome: TriggerOutcome) -> &'static str {
    match outcome {
        TriggerOutcome::Delivered => "delivered",
        TriggerOutcome::Retrying => "retrying",
        TriggerOutcome::GaveUp => "gave_up",
    }
}

/// Records attempt `attempt` of outbox event `head` of region `tr` and its
/// [`event_outcome`]; unless it is retried, the event leaves the outbox with it.
pub fn event_record(
    tr: &TitleRegionId,
    head: &OutboxEvent,
    attempt: u32,
    outcome: TriggerOutcome,
    d: Delivery,
    at: UnixMillis,
) -> Command {
    let record = TriggerRecord {
        trigger_id: head.trigger_id.clone(),
        kind: TriggerKind::Event,
        name: head.event_name.clone(),
        vs: head.vs.clone(),
        at,
        attempt,
        status_code: d.status,
        response: d.response,
        latency_ms: d.latency_ms,
        outcome,
    };
    Command::RecordTrigger {
        title_region_id: tr.clone(),
        record,
        pop_seq: (outcome != TriggerOutcome::Retrying).then_some(head.seq),
        task: None,
    }
}

/// Records the firing of `task` at `at`: tasks are tried once.
pub fn task_record(
    tr: &TitleRegionId,
    trigger_id: String,
    task: &VsTask,
    at: UnixMillis,
    d: Delivery,
) -> Command {
    let record = TriggerRecord {
        trigger_id,
        kind: TriggerKind::Task,
        name: task.name.to_string(),
        vs: task.vs.clone(),
        at,
        attempt: 1,
        status_code: d.status,
        response: d.response,
        latency_ms: d.latency_ms,
        outcome: if delivered(d.status) {
            TriggerOutcome::Delivered
        } else {
            TriggerOutcome::GaveUp
        },
    };
    Command::RecordTrigger {
        title_region_id: tr.clone(),
        record,
        pop_seq: None,
        task: Some(task.name.clone()),
    }
}

/// Where the delivery of a region's outbox stands: events go one at a time
/// in order, the head is retried with backoff until it is recorded as
/// delivered or given up.
#[derive(Debug, Default)]
pub struct EventCursor {
    /// The outbox head in flight.
    in_flight: Option<u64>,
    /// Attempts per event so far.
    attempts: BTreeMap<u64, u32>,
    /// No delivery before this.
    retry_at: Option<Instant>,
}

impl EventCursor {
    /// Whether to deliver the outbox head `head` (its seq; `None`: the
    /// outbox is empty) at `now`: the attempt number if so.
    pub fn start(&mut self, head: Option<u64>, now: Instant) -> Option<u32> {
        if self.in_flight.is_some() || self.retry_at.is_some_and(|t| now < t) {
            return None;
        }
        let Some(seq) = head else {
            self.attempts.clear();
            return None;
        };
        self.retry_at = None;
        self.in_flight = Some(seq);
        let attempt = {
            let a = self.attempts.entry(seq).or_insert(0);
            *a += 1;
            *a
        };
        // Forget attempt counts of events already gone.
        self.attempts.retain(|s, _| *s >= seq);
        Some(attempt)
    }

    /// A delivery of `seq` came back while `head` is the outbox head: the
    /// attempt number to record, unless the event is no longer the head.
    pub fn finished(&mut self, seq: u64, head: Option<u64>) -> Option<u32> {
        self.in_flight = None;
        if head != Some(seq) {
            return None;
        }
        Some(self.attempts.get(&seq).copied().unwrap_or(1))
    }

    /// The record of attempt `attempt` of `seq`, ending in `outcome`, was
    /// committed at `now`; true when the event left the outbox (the next one
    /// can go at once).
    pub fn recorded(
        &mut self,
        seq: u64,
        attempt: u32,
        outcome: TriggerOutcome,
        now: Instant,
    ) -> bool {
        if outcome == TriggerOutcome::Retrying {
            self.retry_at = Some(now + event_retry_delay(attempt));
            false
        } else {
            self.attempts.remove(&seq);
            true
        }
    }

    /// The record could not be committed: deliver again shortly.
    pub fn record_failed(&mut self, now: Instant) {
        self.retry_at = Some(now + RECORD_RETRY);
    }
}

#[cfg(test)]
mod tests;
