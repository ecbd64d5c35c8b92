//! Tests of event and task delivery decisions.

use super::*;

fn tr() -> TitleRegionId {
    TitleRegionId::new_unchecked("tr-1")
}

fn name() -> VsName {
    VsName::parse("vs-a").unwrap()
}

fn task(schedule: TaskSchedule) -> VsTask {
    VsTask {
        title_region_id: tr(),
        name: name(),
        vs: name(),
        schedule,
        args: "{}".into(),
        enabled: true,
        last_fired_at: None,
        created_at: 1_000,
    }
}

fn outbox_event(seq: u64) -> OutboxEvent {
    OutboxEvent {
        seq,
        trigger_id: format!("trg-{seq}"),
        handler: name(),
        vs: name(),
        event_name: "player_login".into(),
        event_time: 1_234,
        event_data: r#"{"player":"p1"}"#.into(),
        args: "not json".into(),
    }
}

fn delivery(status: Option<u16>) -> Delivery {
    Delivery {
        status,
        response: "ok".into(),
        latency_ms: 7,
    }
}

#[test]
fn retry_delays_double_and_cap() {
    assert_eq!(event_retry_delay(1), Duration::from_millis(500));
    assert_eq!(event_retry_delay(2), Duration::from_millis(1000));
    assert_eq!(event_retry_delay(4), Duration::from_millis(4000));
    assert_eq!(event_retry_delay(30), Duration::from_secs(30));
}

#[test]
fn task_fire_times() {
    let mut t = task(TaskSchedule::Interval { secs: 5 });
    assert_eq!(next_task_fire(&t), Some(6_000));
    t.last_fired_at = Some(10_000);
    assert_eq!(next_task_fire(&t), Some(15_000));
    t.schedule = TaskSchedule::Cron {
        expr: "*/2 * * * *".into(),
    };
    assert_eq!(next_task_fire(&t), Some(120_000));
    t.enabled = false;
    assert_eq!(next_task_fire(&t), None);
}

#[test]
fn due_tasks_skip_those_not_due_or_already_firing() {
    let mut other = task(TaskSchedule::Interval { secs: 60 });
    other.name = VsName::parse("vs-b").unwrap();
    let tasks = BTreeMap::from([
        (name(), task(TaskSchedule::Interval { secs: 5 })),
        (other.name.clone(), other),
    ]);
    let names = |v: Vec<VsTask>| {
        v.into_iter()
            .map(|t| t.name.to_string())
            .collect::<Vec<_>>()
    };
    assert!(due_tasks(Some(&tasks), &HashSet::new(), 5_999).is_empty());
    assert_eq!(
        names(due_tasks(Some(&tasks), &HashSet::new(), 6_000)),
        ["vs-a"]
    );
    assert_eq!(
        names(due_tasks(Some(&tasks), &HashSet::new(), 61_000)),
        ["vs-a", "vs-b"]
    );
    let firing = HashSet::from([name()]);
    assert_eq!(names(due_tasks(Some(&tasks), &firing, 61_000)), ["vs-b"]);
    assert!(due_tasks(None, &HashSet::new(), 61_000).is_empty());
}

#[test]
fn request_bodies() {
    let body: serde_json::Value = serde_json::from_slice(&event_body(&outbox_event(3))).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "trigger_id": "trg-3",
            "event_name": "player_login",
            "event_time": "1234",
            "event_data": {"player": "p1"},
            "args": null,
        })
    );
    let mut t = task(TaskSchedule::Interval { secs: 5 });
    t.args = r#"{"n":1}"#.into();
    let body: serde_json::Value = serde_json::from_slice(&task_body("trg-9", &t, 6_000)).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "trigger_id": "trg-9",
            "task_name": "vs-a",
            "task_time": "6000",
            "args": {"n": 1},
        })
    );
}

#[test]
fn event_outcomes_and_their_records() {
    assert_eq!(event_outcome(Some(204), 8), TriggerOutcome::Delivered);
    assert_eq!(event_outcome(Some(500), 1), TriggerOutcome::Retrying);
    assert_eq!(
        event_outcome(None, EVENT_MAX_ATTEMPTS - 1),
        TriggerOutcome::Retrying
    );
    assert_eq!(
        event_outcome(Some(302), EVENT_MAX_ATTEMPTS),
        TriggerOutcome::GaveUp
    );
    assert_eq!(outcome_label(TriggerOutcome::GaveUp), "gave_up");
    let head = outbox_event(3);
    let record = |outcome| event_record(&tr(), &head, 2, outcome, delivery(Some(500)), 99);
    let Command::RecordTrigger {
        title_region_id,
        record: r,
        pop_seq,
        task,
    } = record(TriggerOutcome::Retrying)
    else {
        panic!("not a record");
    };
    assert_eq!((title_region_id, pop_seq, task), (tr(), None, None));
    assert_eq!(
        r,
        TriggerRecord {
            trigger_id: "trg-3".into(),
            kind: TriggerKind::Event,
            name: "player_login".into(),
            vs: name(),
            at: 99,
            attempt: 2,
            status_code: Some(500),
            response: "ok".into(),
            latency_ms: 7,
            outcome: TriggerOutcome::Retrying,
        }
    );
    assert!(matches!(
        record(TriggerOutcome::GaveUp),
        Command::RecordTrigger {
            pop_seq: Some(3),
            ..
        }
    ));
}

#[test]
fn task_records_are_delivered_or_given_up() {
    let t = task(TaskSchedule::Interval { secs: 5 });
    let outcome = |status| match task_record(&tr(), "trg".into(), &t, 5, delivery(status)) {
        Command::RecordTrigger {
            record,
            pop_seq: None,
            task: Some(task),
            ..
        } if task == name() && record.attempt == 1 && record.kind == TriggerKind::Task => {
            record.outcome
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(outcome(Some(200)), TriggerOutcome::Delivered);
    assert_eq!(outcome(Some(503)), TriggerOutcome::GaveUp);
    assert_eq!(outcome(None), TriggerOutcome::GaveUp);
}

#[test]
fn the_cursor_sends_one_event_at_a_time_and_paces_retries() {
    let t0 = Instant::now();
    let mut c = EventCursor::default();
    assert_eq!(c.start(None, t0), None);
    assert_eq!(c.start(Some(1), t0), Some(1));
    // One in flight at a time.
    assert_eq!(c.start(Some(1), t0), None);
    assert_eq!(c.finished(1, Some(1)), Some(1));
    // Retrying: not before the backoff.
    assert!(!c.recorded(1, 1, TriggerOutcome::Retrying, t0));
    assert_eq!(c.start(Some(1), t0 + Duration::from_millis(499)), None);
    assert_eq!(c.start(Some(1), t0 + Duration::from_millis(500)), Some(2));
    // The record could not be committed: again after a short pause.
    assert_eq!(c.finished(1, Some(1)), Some(2));
    c.record_failed(t0);
    assert_eq!(c.start(Some(1), t0 + Duration::from_millis(199)), None);
    assert_eq!(c.start(Some(1), t0 + RECORD_RETRY), Some(3));
    assert_eq!(c.finished(1, Some(1)), Some(3));
    assert!(c.recorded(1, 3, TriggerOutcome::Delivered, t0));
    // The next event starts at attempt 1 right away.
    assert_eq!(c.start(Some(2), t0), Some(1));
    // An answer for an event no longer at the head is not recorded.
    assert_eq!(c.finished(2, Some(5)), None);
    assert_eq!(c.start(Some(5), t0), Some(1));
}

/// docs/virtual-servers.md §15 names the `outcome` values of
/// `respawn_vs_event_deliveries_total` as the metric spells them, and they
/// are the trigger log's own spelling.
#[test]
fn delivery_metric_labels_match_the_docs() {
    let doc = include_str!("../../../../docs/virtual-servers.md");
    let row = doc
        .lines()
        .find(|l| l.starts_with("| `respawn_vs_event_deliveries_total`"))
        .expect("the metric is documented");
    for o in [
        TriggerOutcome::Delivered,
        TriggerOutcome::Retrying,
        TriggerOutcome::GaveUp,
    ] {
        let label = outcome_label(o);
        assert!(row.contains(&format!("`{label}`")), "{label} in {row}");
        assert_eq!(serde_json::to_value(o).unwrap(), label);
    }
    assert!(!row.contains("GaveUp"), "{row}");
}
