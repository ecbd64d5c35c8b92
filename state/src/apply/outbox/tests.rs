//! Transition tests of event handlers, tasks, the outbox and the trigger log.

use crate::test_fixture::*;
use crate::*;
use respawn_types::*;

#[test]
fn battle_session_events_fill_the_outbox_in_order_and_are_popped_once() {
    let mut h = H::new(ServerMode::Simple);
    // No handler: nothing is queued.
    h.ready_process(1);
    h.start(1, vec![]);
    assert!(h.s.outbox.is_empty());
    // A handler must name an existing virtual server.
    assert!(matches!(
        h.refused(Command::PutEventHandler(EventHandler {
            title_region_id: tr(),
            name: vs_name("h1"),
            vs: vs_name("vs-a"),
            events: vec![],
            args: "{}".into(),
        })),
        Rejection::NotFound { .. }
    ));
    h.put_vs(vs_spec());
    h.ok(Command::PutEventHandler(EventHandler {
        title_region_id: tr(),
        name: vs_name("h1"),
        vs: vs_name("vs-a"),
        events: vec!["event_battle_session_started".into()],
        args: r#"{"a":1}"#.into(),
    }));
    assert!(matches!(
        h.refused(Command::PutEventHandler(EventHandler {
            title_region_id: tr(),
            name: vs_name("h2"),
            vs: vs_name("vs-a"),
            events: vec!["nope".into()],
            args: "{}".into(),
        })),
        Rejection::BadRequest(_)
    ));
    h.ready_process(2);
    h.start(2, vec![]);
    h.ok(Command::AssignPlacement {
        placement_id: pl(2),
        process_id: pid(2),
    });
    let ev = h.ok(Command::ActivateBattleSession {
        process_id: pid(2),
        battle_session_id: bs(2),
    });
    assert!(ev.iter().any(|e| matches!(e, Event::OutboxAppended { .. })));
    let q = &h.s.outbox[&tr()];
    assert_eq!(q.len(), 1, "only the subscribed event");
    let head = q[0].clone();
    assert_eq!(head.event_name, "event_battle_session_started");
    assert_eq!(head.seq, 1);
    assert_eq!(
        head.trigger_id,
        super::trigger_id(&tr(), head.event_time, 1)
    );
    assert!(head.event_data.contains(bs(2).as_str()));
    let record = |outcome| TriggerRecord {
        trigger_id: head.trigger_id.clone(),
        kind: TriggerKind::Event,
        name: head.event_name.clone(),
        vs: vs_name("vs-a"),
        at: T0,
        attempt: 1,
        status_code: Some(500),
        response: "x".repeat(5000),
        latency_ms: 3,
        outcome,
    };
    // A failed attempt is logged; the event stays at the head.
    h.ok(Command::RecordTrigger {
        title_region_id: tr(),
        record: record(TriggerOutcome::Retrying),
        pop_seq: None,
        task: None,
    });
    assert_eq!(h.s.outbox[&tr()].len(), 1);
    assert!(h.s.trigger_log[&tr()][0].response.len() < 1100, "clipped");
    // Delivery pops it, once: a repeat of the same command changes nothing.
    for expect in [Applied::Done, Applied::Unchanged] {
        assert_eq!(
            h.run(Command::RecordTrigger {
                title_region_id: tr(),
                record: record(TriggerOutcome::Delivered),
                pop_seq: Some(1),
                task: None,
            })
            .0,
            Ok(expect)
        );
    }
    assert!(h.s.outbox.is_empty());
    assert_eq!(h.s.trigger_log[&tr()].len(), 2);
}

#[test]
fn tasks_validate_schedules_and_remember_their_last_firing() {
    let mut h = H::new(ServerMode::Simple);
    h.put_vs(vs_spec());
    let task = |schedule| Command::PutTask {
        title_region_id: tr(),
        name: vs_name("t1"),
        vs: vs_name("vs-a"),
        schedule,
        args: "{}".into(),
        enabled: true,
    };
    for bad in [
        TaskSchedule::Interval { secs: 0 },
        TaskSchedule::Cron {
            expr: "61 * * * *".into(),
        },
        TaskSchedule::Cron {
            expr: "0 0 30 2 *".into(),
        },
    ] {
        assert!(matches!(h.refused(task(bad)), Rejection::BadRequest(_)));
    }
    h.ok(task(TaskSchedule::Cron {
        expr: "*/5 * * * *".into(),
    }));
    h.ok(Command::RecordTrigger {
        title_region_id: tr(),
        record: TriggerRecord {
            trigger_id: "t".into(),
            kind: TriggerKind::Task,
            name: "t1".into(),
            vs: vs_name("vs-a"),
            at: T0 + 5,
            attempt: 1,
            status_code: Some(200),
            response: String::new(),
            latency_ms: 1,
            outcome: TriggerOutcome::Delivered,
        },
        pop_seq: None,
        task: Some(vs_name("t1")),
    });
    assert_eq!(h.s.tasks[&tr()][&vs_name("t1")].last_fired_at, Some(T0 + 5));
    // Replacing the task keeps its history.
    h.ok(task(TaskSchedule::Interval { secs: 60 }));
    assert_eq!(h.s.tasks[&tr()][&vs_name("t1")].last_fired_at, Some(T0 + 5));
}

/// The placement events carry the seed's names exactly
/// (ds-hosting-integration §2.6: `event_battle_session_placement_fulfilled`,
/// `…_timedout`, `…_failed`), and a TIMED_OUT placement's event says why.
#[test]
fn placement_events_have_the_pgos_names() {
    for name in [
        "event_battle_session_placement_fulfilled",
        "event_battle_session_placement_timedout",
        "event_battle_session_placement_failed",
    ] {
        assert!(VS_EVENT_NAMES.contains(&name), "{name}");
    }
    assert!(!VS_EVENT_NAMES.iter().any(|n| n.contains("timed_out")));
    let mut h = H::new(ServerMode::Simple);
    h.put_vs(vs_spec());
    h.ok(Command::PutEventHandler(EventHandler {
        title_region_id: tr(),
        name: vs_name("h1"),
        vs: vs_name("vs-a"),
        events: vec!["event_battle_session_placement_timedout".into()],
        args: "{}".into(),
    }));
    h.start(1, vec![]);
    h.at = T0 + 120_000;
    h.ok(Command::PlacementTimedOut {
        placement_id: pl(1),
    });
    let q = &h.s.outbox[&tr()];
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].event_name, "event_battle_session_placement_timedout");
    assert!(
        q[0].event_data.contains("placement timeout"),
        "{}",
        q[0].event_data
    );
}
