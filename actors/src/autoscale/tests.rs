//! Unit tests of the autoscaler's decision.

use super::*;
use respawn_types::scaling::ScheduleWindow;

fn h(n: u32) -> HostId {
    HostId::new_unchecked(format!("h{n}"))
}

fn p(n: u32, host: u32, sessions: u32) -> ProcFacts {
    ProcFacts {
        id: ProcessId::new_unchecked(format!("p{n:03}")),
        host: h(host),
        status: ProcessStatus::Ready,
        sessions,
        version: 1,
    }
}

fn input(buffer: u32, hosts: u32, processes: Vec<ProcFacts>) -> ScaleInput {
    ScaleInput {
        policy: ScalingPolicy {
            buffer,
            max_processes: 100,
            scale_in_delay_secs: 60,
            ..Default::default()
        },
        slots: 1,
        per_host: 4,
        version: 1,
        hosts: (1..=hosts)
            .map(|n| HostFacts {
                id: h(n),
                draining: false,
                connected: true,
            })
            .collect(),
        processes,
        waiting: 0,
        manual_desired: None,
        targets: BTreeMap::new(),
        now: 1_000_000,
        surplus_since: None,
    }
}

fn stopped(plan: &ScalePlan) -> Vec<String> {
    plan.stop.iter().map(|(id, _)| id.to_string()).collect()
}

#[test]
fn the_default_policy_fills_every_host() {
    let mut i = input(0, 2, vec![p(1, 1, 0)]);
    i.policy = ScalingPolicy::default();
    let plan = decide(&i);
    assert!(plan.targets.is_empty());
    assert!(plan.stop.is_empty());
    assert_eq!(plan.decision.action, ScalingAction::Fill);
    assert_eq!(plan.decision.desired_processes, 8);
    assert_eq!(plan.decision.desired_hosts, 2);
}

#[test]
fn a_low_buffer_scales_out_at_once_onto_the_fullest_host() {
    // h1: 2 busy + 1 idle; h2: 1 idle. Buffer 3 → 2 more.
    let i = input(3, 2, vec![p(1, 1, 1), p(2, 1, 1), p(3, 1, 0), p(4, 2, 0)]);
    let plan = decide(&i);
    assert_eq!(plan.decision.action, ScalingAction::ScaleOut);
    assert_eq!(plan.decision.desired_processes, 5);
    assert_eq!(plan.targets[&h(1)], 4, "fullest host filled first");
    assert_eq!(plan.targets[&h(2)], 1);
    assert!(
        plan.decision.reason.contains("scale out by 1"),
        "{}",
        plan.decision.reason
    );
    assert!(plan.stop.is_empty());
}

#[test]
fn waiting_placements_count_and_full_hosts_ask_for_more_hosts() {
    let mut i = input(1, 1, vec![p(1, 1, 1), p(2, 1, 1), p(3, 1, 1), p(4, 1, 1)]);
    i.waiting = 3;
    let plan = decide(&i);
    assert_eq!(plan.decision.desired_processes, 8);
    assert_eq!(plan.decision.desired_hosts, 2);
    assert_eq!(plan.targets[&h(1)], 4);
    assert!(
        plan.decision.reason.contains("new hosts"),
        "{}",
        plan.decision.reason
    );
}

#[test]
fn scale_in_waits_for_the_delay_and_never_stops_a_busy_process() {
    let procs = vec![p(1, 1, 1), p(2, 1, 0), p(3, 2, 0), p(4, 2, 0), p(5, 2, 1)];
    let mut i = input(1, 2, procs);
    let first = decide(&i);
    assert_eq!(first.decision.action, ScalingAction::Hold);
    assert!(first.stop.is_empty());
    assert_eq!(first.surplus_since, Some(i.now));
    // Not yet.
    i.surplus_since = first.surplus_since;
    i.now += 59_000;
    assert!(decide(&i).stop.is_empty());
    // After the delay: 3 idle, buffer 1 → 2 stop, never p1 or p5.
    i.now += 1_000;
    let plan = decide(&i);
    assert_eq!(plan.decision.action, ScalingAction::ScaleIn);
    assert_eq!(plan.decision.desired_processes, 3);
    let s = stopped(&plan);
    assert_eq!(s.len(), 2);
    assert!(!s.contains(&"p001".into()) && !s.contains(&"p005".into()));
    let total: u32 = plan.targets.values().sum();
    assert_eq!(total, 3);
    // Capacity needed again before the delay: the clock restarts.
    let mut i2 = i.clone();
    i2.surplus_since = None;
    i2.processes.truncate(2);
    assert_eq!(decide(&i2).surplus_since, None);
}

#[test]
fn min_and_max_are_respected() {
    let mut i = input(0, 2, vec![]);
    i.policy.min_processes = 3;
    let plan = decide(&i);
    assert_eq!(plan.decision.desired_processes, 3);
    assert!(
        plan.decision.reason.contains("min 3"),
        "{}",
        plan.decision.reason
    );
    let mut i = input(10, 3, vec![p(1, 1, 0)]);
    i.policy.max_processes = 5;
    let plan = decide(&i);
    assert_eq!(plan.decision.desired_processes, 5);
    assert_eq!(plan.targets.values().sum::<u32>(), 5);
    assert!(plan.decision.reason.contains("max_processes 5"));
}

#[test]
fn a_scheduled_window_raises_min_and_buffer_while_open() {
    let hour = 3_600_000u64;
    let mut i = input(1, 3, vec![]);
    i.policy.schedule = vec![ScheduleWindow {
        cron: "0 * * * *".into(),
        duration_secs: 600,
        min_processes: Some(6),
        buffer: Some(2),
    }];
    i.now = 1000 * hour + 60_000; // one minute into a window
    assert_eq!(decide(&i).decision.desired_processes, 6);
    i.now = 1000 * hour + 700_000; // after it
    assert_eq!(decide(&i).decision.desired_processes, 1);
}

#[test]
fn a_manual_desired_count_replaces_the_buffer_within_min_and_max() {
    let mut i = input(5, 2, vec![]);
    i.manual_desired = Some(2);
    assert_eq!(decide(&i).decision.desired_processes, 2);
    i.policy.max_processes = 1;
    assert_eq!(decide(&i).decision.desired_processes, 1);
    // Busy processes stay whatever the desired count.
    let mut i = input(0, 1, vec![p(1, 1, 1), p(2, 1, 1), p(3, 1, 0)]);
    i.manual_desired = Some(1);
    i.surplus_since = Some(0);
    let plan = decide(&i);
    assert_eq!(stopped(&plan), vec!["p003".to_string()]);
}

#[test]
fn buffer_percent_keeps_a_share_of_the_fleet_free() {
    // 6 busy, 25 % free → 8 slots.
    let procs = (1..=6).map(|n| p(n, 1 + n / 5, 1)).collect();
    let mut i = input(0, 3, procs);
    i.policy.buffer_percent = Some(25);
    assert_eq!(decide(&i).decision.desired_processes, 8);
}

#[test]
fn parallel_mode_counts_free_slots() {
    // 2 processes of 4 slots, 3 + 0 used: 5 free ≥ buffer 4.
    let mut i = input(4, 1, vec![p(1, 1, 3), p(2, 1, 0)]);
    i.slots = 4;
    let plan = decide(&i);
    assert_eq!(plan.decision.desired_processes, 2);
    // Buffer 6: one more process.
    i.policy.buffer = 6;
    assert_eq!(decide(&i).decision.desired_processes, 3);
}

#[test]
fn a_rollout_replaces_idle_old_processes_and_keeps_busy_ones() {
    let mut old_busy = p(1, 1, 1);
    old_busy.version = 1;
    let mut old_idle = p(2, 1, 0);
    old_idle.version = 1;
    let new_idle = p(3, 1, 0);
    let mut i = input(0, 1, vec![old_busy, old_idle, new_idle]);
    i.version = 2;
    i.processes[2].version = 2;
    i.policy = ScalingPolicy::default();
    let plan = decide(&i);
    assert_eq!(plan.decision.action, ScalingAction::Rollout);
    assert_eq!(stopped(&plan), vec!["p002".to_string()]);
    // Autoscaled: the same, and the host keeps its target (replacement).
    let mut j = i.clone();
    j.policy.buffer = 2;
    let plan = decide(&j);
    assert_eq!(stopped(&plan), vec!["p002".to_string()]);
    assert_eq!(plan.targets[&h(1)], 3);
}

#[test]
fn draining_and_unlinked_hosts_get_no_new_process() {
    let mut i = input(3, 3, vec![]);
    i.hosts[0].draining = true;
    i.hosts[1].connected = false;
    let plan = decide(&i);
    assert_eq!(plan.targets[&h(1)], 0);
    assert_eq!(plan.targets[&h(2)], 0);
    assert_eq!(plan.targets[&h(3)], 3);
}

/// Reading a fleet's processes chunk by chunk gives what one read gives,
/// each chunk at most its size, and ends.
#[test]
fn proc_facts_in_chunks_equal_one_read() {
    use crate::policy::tests::W;
    let mut w = W::new(ServerMode::Simple);
    for n in 0..11 {
        w.process(&format!("p{n:02}"), if n % 2 == 0 { "h1" } else { "h2" });
    }
    let f = FleetId::new_unchecked("f");
    let whole = ScaleInput::of(&w.s, &f, |_| true, 0).unwrap().processes;
    assert_eq!(whole.len(), 11);
    for size in [1, 3, 4, 11, 12] {
        let (mut got, mut after, mut reads) = (Vec::new(), None, 0);
        loop {
            let (chunk, next) = proc_facts(&w.s, &f, after.as_ref(), size);
            assert!(chunk.len() <= size);
            reads += 1;
            got.extend(chunk);
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(got, whole, "chunks of {size}");
        assert_eq!(reads, 11usize.div_ceil(size).max(1), "chunks of {size}");
    }
    // A process that exits between two chunks is simply not in the next.
    let (first, after) = proc_facts(&w.s, &f, None, 5);
    w.ok(respawn_state::Command::ProcessExited {
        process_id: ProcessId::new_unchecked("p07"),
        reason: ExitReason::Killed,
    });
    let (rest, next) = proc_facts(&w.s, &f, after.as_ref(), 100);
    assert_eq!(next, None);
    assert_eq!(first.len() + rest.len(), 10);
    assert!(!rest.iter().any(|p| p.id.as_str() == "p07"));
    // An unknown fleet has none.
    assert_eq!(
        proc_facts(&w.s, &FleetId::new_unchecked("nope"), None, 5),
        (Vec::new(), None)
    );
}
