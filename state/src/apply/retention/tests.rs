//! Retention: what `Prune` removes and when, that nothing live goes, that
//! the indexes stay equal to a full recomputation, that every replica
//! prunes at the same log index (snapshots included), issued-id expiry and
//! cap, and expired ids told apart from unknown ones.

use crate::retention::*;
use crate::test_fixture::*;
use crate::*;
use respawn_types::*;
use std::collections::{BTreeMap, BTreeSet};

const W: RetentionWindows = RetentionWindows {
    records_ms: 60_000,
    issued_ids_ms: 10_000,
};

/// Every index recomputed from the records it indexes equals the kept one
/// (empty sets are the same as absent ones).
fn assert_indexes_consistent(s: &ClusterState) {
    fn norm<K: Ord + Clone, V: Ord + Clone>(
        m: &BTreeMap<K, BTreeSet<V>>,
    ) -> BTreeMap<K, BTreeSet<V>> {
        m.iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
    let mut by_player: BTreeMap<PlayerId, BTreeSet<PlayerBattleSessionId>> = BTreeMap::new();
    for p in s.player_battle_sessions.values() {
        if p.status != PlayerBattleSessionStatus::Completed {
            by_player
                .entry(p.player_id.clone())
                .or_default()
                .insert(p.id.clone());
        }
    }
    assert_eq!(norm(&s.sessions_by_player), by_player, "sessions_by_player");
    let mut live: BTreeMap<FleetId, BTreeSet<ProcessId>> = BTreeMap::new();
    for p in s.processes.values() {
        if p.status != ProcessStatus::Exited {
            live.entry(p.fleet_id.clone())
                .or_default()
                .insert(p.id.clone());
        }
    }
    assert_eq!(
        norm(&s.live_processes_by_fleet),
        live,
        "live_processes_by_fleet"
    );
    let mut by_process: BTreeMap<ProcessId, BTreeSet<BattleSessionId>> = BTreeMap::new();
    for b in s.battle_sessions.values() {
        if matches!(
            b.status,
            BattleSessionStatus::Activating | BattleSessionStatus::Active
        ) {
            let p = b
                .process_id
                .clone()
                .expect("a held session names its process");
            by_process.entry(p).or_default().insert(b.id.clone());
        }
    }
    assert_eq!(
        norm(&s.sessions_by_process),
        by_process,
        "sessions_by_process"
    );
    let mut waiting: BTreeMap<FleetId, BTreeSet<(UnixMillis, PlacementId)>> = BTreeMap::new();
    for pl in s.placements.values() {
        let pending =
            s.battle_sessions[&pl.battle_session_id].status == BattleSessionStatus::Pending;
        if pl.status == PlacementStatus::Pending && pending {
            waiting
                .entry(pl.fleet_id.clone())
                .or_default()
                .insert((pl.created_at, pl.id.clone()));
        }
    }
    assert_eq!(norm(&s.waiting_by_fleet), waiting, "waiting_by_fleet");
    let mut placeable: BTreeMap<FleetId, BTreeSet<ProcessId>> = BTreeMap::new();
    for p in s.processes.values().filter(|p| s.is_placeable(p)) {
        placeable
            .entry(p.fleet_id.clone())
            .or_default()
            .insert(p.id.clone());
    }
    assert_eq!(norm(&s.placeable_by_fleet), placeable, "placeable_by_fleet");
    let by_time: BTreeSet<(UnixMillis, BattleSessionId)> = s
        .issued_session_ids
        .iter()
        .map(|(id, i)| (i.issued_at, id.clone()))
        .collect();
    assert_eq!(s.issued_by_time, by_time, "issued_by_time");
    let mut per_region: BTreeMap<TitleRegionId, u32> = BTreeMap::new();
    for i in s.issued_session_ids.values() {
        *per_region.entry(i.title_region_id.clone()).or_default() += 1;
    }
    assert_eq!(s.issued_per_region, per_region, "issued_per_region");
    // Every reference between kept records resolves.
    for pl in s.placements.values() {
        assert!(s.battle_sessions.contains_key(&pl.battle_session_id));
        for pbs in &pl.player_battle_sessions {
            assert!(s.player_battle_sessions.contains_key(pbs), "{pbs} dangling");
        }
    }
    for b in s.battle_sessions.values() {
        assert!(s.placements.contains_key(&b.placement_id));
    }
    for p in s.player_battle_sessions.values() {
        assert!(s.battle_sessions.contains_key(&p.battle_session_id));
    }
}

/// The leader's whole pass at `now`, as one batch.
fn candidates(s: &ClusterState, now: UnixMillis) -> PruneBatch {
    let mut cursor = PruneCursor::default();
    let mut batch = PruneBatch::new(W);
    while !prune_candidates(s, now, W, MAX_PRUNE_BATCH, 3, &mut cursor, &mut batch) {}
    batch
}

fn prune_now(h: &mut H) -> PruneBatch {
    let b = candidates(&h.s, h.at);
    h.ok(Command::Prune(b.clone()));
    assert_indexes_consistent(&h.s);
    b
}

/// Three sessions: 1 ended (its process exited), 2 active, 3 pending.
fn mixed() -> H {
    let mut h = H::new(ServerMode::Simple);
    h.ready_process(1);
    h.ready_process(2);
    h.active_session(1, 1);
    h.active_session(2, 2);
    h.start(3, vec![(pbs(30), player(30))]);
    h.ok(Command::ProcessExited {
        process_id: pid(1),
        reason: ExitReason::Killed,
    });
    h
}

#[test]
fn terminal_records_leave_after_the_window_and_not_before() {
    let mut h = mixed();
    let ended = h.at;
    h.at = ended + W.records_ms - 1;
    assert!(candidates(&h.s, h.at).is_empty());
    // Listing them anyway before their time changes nothing.
    let early = PruneBatch {
        retention: W,
        sessions: vec![bs(1)],
        processes: vec![pid(1)],
        issued_ids: vec![],
    };
    let before = h.s.clone();
    assert_eq!(h.run(Command::Prune(early)).0, Ok(Applied::Unchanged));
    assert_eq!(h.s, before);

    h.at = ended + W.records_ms;
    let b = prune_now(&mut h);
    assert_eq!(b.sessions, vec![bs(1)]);
    assert_eq!(b.processes, vec![pid(1)]);
    assert!(!h.s.battle_sessions.contains_key(&bs(1)));
    assert!(!h.s.placements.contains_key(&pl(1)));
    assert!(!h.s.player_battle_sessions.contains_key(&pbs(10)));
    assert!(!h.s.processes.contains_key(&pid(1)));
    // The live ones stay, untouched.
    assert_eq!(h.session(2).status, BattleSessionStatus::Active);
    assert_eq!(h.placement(3).status, PlacementStatus::Pending);
    assert_eq!(h.process(2).status, ProcessStatus::Ready);
    // Pruning again finds nothing; a repeated batch is a no-op.
    assert!(candidates(&h.s, h.at).is_empty());
    assert_eq!(h.run(Command::Prune(b)).0, Ok(Applied::Unchanged));
}

#[test]
fn nothing_live_is_ever_pruned() {
    let mut h = mixed();
    // An ACTIVATING attempt too, and a process that is ending.
    h.ready_process(4);
    h.start(4, vec![]);
    h.ok(Command::AssignPlacement {
        placement_id: pl(4),
        process_id: pid(4),
    });
    h.ready_process(5);
    h.ok(Command::ProcessEnding { process_id: pid(5) });
    h.at += 10 * W.records_ms;
    let b = candidates(&h.s, h.at);
    assert_eq!(
        (b.sessions.clone(), b.processes.clone()),
        (vec![bs(1)], vec![pid(1)])
    );
    // Listing every record explicitly removes only the terminal ones.
    let all = PruneBatch {
        retention: W,
        sessions: h.s.battle_sessions.keys().cloned().collect(),
        processes: h.s.processes.keys().cloned().collect(),
        issued_ids: vec![],
    };
    let live_sessions: BTreeSet<BattleSessionId> =
        h.s.battle_sessions
            .values()
            .map(|r| &**r)
            .filter(|s| s.status != BattleSessionStatus::Terminated)
            .map(|s| s.id.clone())
            .collect();
    let live_processes: BTreeSet<ProcessId> =
        h.s.processes
            .values()
            .map(|r| &**r)
            .filter(|p| p.status != ProcessStatus::Exited)
            .map(|p| p.id.clone())
            .collect();
    h.ok(Command::Prune(all));
    assert_indexes_consistent(&h.s);
    let kept_sessions: BTreeSet<BattleSessionId> = h.s.battle_sessions.keys().cloned().collect();
    let kept_processes: BTreeSet<ProcessId> = h.s.processes.keys().cloned().collect();
    assert_eq!(kept_sessions, live_sessions);
    assert_eq!(kept_processes, live_processes);
}

#[test]
fn a_parallel_process_lost_mid_session_goes_with_its_session() {
    // The exit ends the session and frees the process's index entry, so
    // both leave together once the window has passed.
    let mut h = H::new(ServerMode::Parallel { max_sessions: 2 });
    h.ready_process(1);
    h.active_session(1, 1);
    h.ok(Command::ProcessExited {
        process_id: pid(1),
        reason: ExitReason::Lost,
    });
    assert_eq!(h.session(1).status, BattleSessionStatus::Terminated);
    h.at += W.records_ms;
    prune_now(&mut h);
    assert!(h.s.processes.is_empty() && h.s.battle_sessions.is_empty());
}

#[test]
fn every_replica_prunes_at_the_same_index_snapshots_included() {
    // The leader's log: the life cycle, with prunes it proposed from its
    // own state, stamped with its clock.
    let mut leader = mixed();
    let mut log: Vec<Request> = Vec::new();
    fn rec(h: &mut H, log: &mut Vec<Request>, c: Command) {
        log.push(Request {
            at: h.at,
            command: c.clone(),
        });
        h.ok(c);
    }
    for step in 0..6u32 {
        leader.at += W.records_ms / 2;
        let n = 10 + step;
        let l = &mut log;
        rec(
            &mut leader,
            l,
            Command::ProcessStarted {
                process_id: pid(n),
                host_id: host_id(),
                pid: n,
                fleet_version: 0,
            },
        );
        rec(
            &mut leader,
            l,
            Command::ProcessReady {
                process_id: pid(n),
                port: 7000 + n as u16,
                log_paths: vec![],
            },
        );
        rec(
            &mut leader,
            l,
            Command::IssueBattleSessionId {
                title_region_id: tr(),
                battle_session_id: bs(n),
                max_outstanding: None,
            },
        );
        rec(
            &mut leader,
            l,
            Command::StartPlacement(StartPlacement {
                placement_id: pl(n),
                title_region_id: tr(),
                fleet_id: fleet_id(),
                battle_session_id: bs(n),
                max_players: 2,
                properties: Default::default(),
                players: vec![(pbs(n * 10), player(n))],
                timeout_ms: None,
            }),
        );
        rec(
            &mut leader,
            l,
            Command::AssignPlacement {
                placement_id: pl(n),
                process_id: pid(n),
            },
        );
        rec(
            &mut leader,
            l,
            Command::ActivateBattleSession {
                process_id: pid(n),
                battle_session_id: bs(n),
            },
        );
        rec(
            &mut leader,
            l,
            Command::ProcessExited {
                process_id: pid(n),
                reason: ExitReason::Killed,
            },
        );
        let b = candidates(&leader.s, leader.at);
        rec(&mut leader, l, Command::Prune(b));
    }
    // Two followers from the same start: one applies it all, the other
    // restarts from a snapshot (serialized state) half way.
    let start = mixed().s;
    let mut a = start.clone();
    let mut b = start;
    let mut sizes_a = Vec::new();
    let mut sizes_b = Vec::new();
    for (i, req) in log.iter().enumerate() {
        let (ra, ea) = a.apply(req);
        let (rb, eb) = b.apply(req);
        assert_eq!((ra, ea), (rb, eb), "answers differ at log index {i}");
        if i == log.len() / 2 {
            let snap = serde_json::to_vec(&b).unwrap();
            b = serde_json::from_slice(&snap).unwrap();
        }
        sizes_a.push((
            a.battle_sessions.len(),
            a.processes.len(),
            a.placements.len(),
        ));
        sizes_b.push((
            b.battle_sessions.len(),
            b.processes.len(),
            b.placements.len(),
        ));
        assert_eq!(a, b, "replicas differ after log index {i}");
    }
    assert_eq!(sizes_a, sizes_b);
    // Something was pruned along the way, and the result equals the leader's.
    assert!(sizes_a.windows(2).any(|w| w[1].0 < w[0].0));
    assert_indexes_consistent(&a);
    assert_eq!(a.battle_sessions, leader.s.battle_sessions);
}

#[test]
fn the_scan_is_bounded_and_the_batch_capped() {
    let mut h = H::new(ServerMode::Simple);
    for n in 1..=9 {
        h.ready_process(n);
        h.active_session(n, n);
        h.ok(Command::ProcessExited {
            process_id: pid(n),
            reason: ExitReason::Killed,
        });
    }
    h.at += W.records_ms;
    let mut cursor = PruneCursor::default();
    let mut batch = PruneBatch::new(W);
    // Two records looked at a call: the pass takes five calls.
    let mut calls = 0;
    while !prune_candidates(&h.s, h.at, W, 100, 2, &mut cursor, &mut batch) {
        calls += 1;
    }
    assert_eq!(calls, 4);
    assert_eq!((batch.sessions.len(), batch.processes.len()), (9, 9));
    // At most four of a kind a batch: the rest waits for the next.
    let mut cursor = PruneCursor::default();
    let mut batch = PruneBatch::new(W);
    while !prune_candidates(&h.s, h.at, W, 4, 100, &mut cursor, &mut batch) && !batch.is_full(4) {}
    assert_eq!((batch.sessions.len(), batch.processes.len()), (4, 4));
    h.ok(Command::Prune(batch));
    assert_indexes_consistent(&h.s);
    assert_eq!(h.s.battle_sessions.len(), 5);
    // Too large a batch, or a window out of bounds, is refused.
    let mut big = PruneBatch::new(W);
    big.processes = (0..=MAX_PRUNE_BATCH as u32).map(pid).collect();
    assert!(matches!(
        h.refused(Command::Prune(big)),
        Rejection::BadRequest(_)
    ));
    let mut w = W;
    w.records_ms = 1;
    assert!(matches!(
        h.refused(Command::Prune(PruneBatch::new(w))),
        Rejection::BadRequest(_)
    ));
}

fn issue(h: &mut H, id: &BattleSessionId, cap: Option<u32>) -> (Response, Vec<Event>) {
    h.run(Command::IssueBattleSessionId {
        title_region_id: tr(),
        battle_session_id: id.clone(),
        max_outstanding: cap,
    })
}

#[test]
fn issued_ids_are_capped_per_title_region_and_expire() {
    let mut h = H::new(ServerMode::Simple);
    let ids: Vec<BattleSessionId> = (0..3).map(|_| BattleSessionId::generate()).collect();
    assert!(issue(&mut h, &ids[0], Some(2)).0.is_ok());
    h.at += 1;
    assert!(issue(&mut h, &ids[1], Some(2)).0.is_ok());
    let before = h.s.clone();
    assert!(matches!(
        issue(&mut h, &ids[2], Some(2)).0,
        Err(Rejection::TooMany(_))
    ));
    assert_eq!(h.s, before);
    assert_indexes_consistent(&h.s);

    // Using one frees a slot.
    h.ok(Command::StartPlacement(StartPlacement {
        placement_id: pl(1),
        title_region_id: tr(),
        fleet_id: fleet_id(),
        battle_session_id: ids[1].clone(),
        max_players: 2,
        properties: Default::default(),
        players: vec![],
        timeout_ms: None,
    }));
    assert_indexes_consistent(&h.s);
    assert!(issue(&mut h, &ids[2], Some(2)).0.is_ok());

    // The first expires after its window, the third (issued later) not yet.
    h.at = T0 + W.issued_ids_ms;
    let b = prune_now(&mut h);
    assert_eq!(b.issued_ids, vec![(T0, ids[0].clone())]);
    assert!(!h.s.issued_session_ids.contains_key(&ids[0]));
    assert!(h.s.issued_session_ids.contains_key(&ids[2]));
    // Using the expired one says so.
    let r = h.refused(Command::StartPlacement(StartPlacement {
        placement_id: pl(2),
        title_region_id: tr(),
        fleet_id: fleet_id(),
        battle_session_id: ids[0].clone(),
        max_players: 2,
        properties: Default::default(),
        players: vec![],
        timeout_ms: None,
    }));
    assert!(matches!(r, Rejection::Expired { .. }), "{r:?}");
}

#[test]
fn removed_ids_answer_expired_and_unknown_ones_not_found() {
    let mut h = H::new(ServerMode::Simple);
    h.ready_process(1);
    let (bs_id, pl_id, pbs_id) = (
        BattleSessionId::generate(),
        PlacementId::generate(),
        PlayerBattleSessionId::generate(),
    );
    issue(&mut h, &bs_id, None).0.unwrap();
    h.ok(Command::StartPlacement(StartPlacement {
        placement_id: pl_id.clone(),
        title_region_id: tr(),
        fleet_id: fleet_id(),
        battle_session_id: bs_id.clone(),
        max_players: 2,
        properties: Default::default(),
        players: vec![(pbs_id.clone(), player(1))],
        timeout_ms: None,
    }));
    h.ok(Command::CancelPlacement {
        title_region_id: tr(),
        placement_id: pl_id.clone(),
    });
    h.at += W.records_ms;
    assert_eq!(prune_now(&mut h).sessions, vec![bs_id.clone()]);
    assert!(h.s.pruned.placement(&pl_id) && h.s.pruned.session(&bs_id));
    assert!(h.s.pruned.player_battle_session(&pbs_id));

    let expired = |r: Rejection| matches!(r, Rejection::Expired { .. });
    assert!(expired(h.refused(Command::CancelPlacement {
        title_region_id: tr(),
        placement_id: pl_id.clone(),
    })));
    assert!(expired(h.refused(Command::TerminatePlayerBattleSession {
        title_region_id: tr(),
        battle_session_id: bs_id.clone(),
        player_battle_session_id: pbs_id.clone(),
    })));
    assert!(expired(h.refused(Command::AddPlayers {
        title_region_id: tr(),
        battle_session_id: bs_id.clone(),
        players: vec![(PlayerBattleSessionId::generate(), player(2))],
    })));
    // An id made after everything pruned, or one a caller chose, is unknown.
    std::thread::sleep(std::time::Duration::from_millis(2));
    let later = PlacementId::generate();
    for id in [later, PlacementId::new_unchecked("pl-mine")] {
        let r = h.refused(Command::CancelPlacement {
            title_region_id: tr(),
            placement_id: id,
        });
        assert!(matches!(r, Rejection::NotFound { .. }), "{r:?}");
    }
}

#[test]
fn a_snapshot_from_before_retention_still_loads_and_its_issued_ids_expire() {
    let mut h = H::new(ServerMode::Simple);
    issue(&mut h, &bs(7), None).0.unwrap();
    let mut json = serde_json::to_value(&h.s).unwrap();
    // What an older node wrote: the title region only, no indexes.
    json["issued_session_ids"] = serde_json::json!({ "bs-7": "tr-1" });
    let obj = json.as_object_mut().unwrap();
    for k in ["issued_by_time", "issued_per_region", "pruned"] {
        obj.remove(k);
    }
    h.s = serde_json::from_value(json).unwrap();
    assert_eq!(h.s.issued_session_ids[&bs(7)].issued_at, 0);
    // The first prune indexes and expires it.
    h.ok(Command::Prune(PruneBatch::new(W)));
    assert_indexes_consistent(&h.s);
    prune_now(&mut h);
    assert!(h.s.issued_session_ids.is_empty());
}

#[test]
fn issuing_the_same_id_again_is_a_repeat_not_a_conflict() {
    let mut h = H::new(ServerMode::Simple);
    let id = BattleSessionId::generate();
    assert!(issue(&mut h, &id, Some(1)).0.is_ok());
    let before = h.s.clone();
    // Applied a second time (a retried forward): nothing changes, no 409,
    // and the cap of one is not reached by the repeat.
    h.at += 1;
    assert!(issue(&mut h, &id, Some(1)).0.is_ok());
    assert_eq!(h.s, before);
    assert_indexes_consistent(&h.s);
    // Once a placement took it, issuing it again is a conflict.
    h.ok(Command::StartPlacement(StartPlacement {
        placement_id: pl(1),
        title_region_id: tr(),
        fleet_id: fleet_id(),
        battle_session_id: id.clone(),
        max_players: 2,
        properties: Default::default(),
        players: vec![],
        timeout_ms: None,
    }));
    assert!(matches!(
        issue(&mut h, &id, Some(1)).0,
        Err(Rejection::Conflict(_))
    ));
}
