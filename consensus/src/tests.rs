//! Tests of the stores and the `Consensus` handle: real redb files in a
//! temporary directory, a real one-member openraft cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::*;
use openraft::testing::{StoreBuilder, Suite};
use openraft::LogIdOptionExt;
use respawn_state::*;
use respawn_types::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub(crate) const T: Duration = Duration::from_secs(20);
const NODE: u64 = 1;

// ----- fixtures -----

pub(crate) fn title_region(n: u32) -> TitleRegion {
    TitleRegion {
        id: TitleRegionId::new_unchecked(format!("tr-{n}")),
        title_id: TitleId::new_unchecked("title-1"),
        name: format!("region {n}"),
        title_name: "Title".into(),
        secret_id: SecretId::new_unchecked(format!("sid-{n}")),
        secret_key: "0123456789abcdef0123".into(),
    }
}

pub(crate) fn put(n: u32) -> Command {
    Command::PutTitleRegion(title_region(n))
}

fn fleet() -> Fleet {
    Fleet {
        id: FleetId::new_unchecked("fleet-1"),
        title_region_id: TitleRegionId::new_unchecked("tr-0"),
        name: "fleet".into(),
        mode: ServerMode::Parallel { max_sessions: 3 },
        runtime: RuntimeConfig {
            launch_path: "/bin/ds".into(),
            args: vec!["--x".into()],
            env: BTreeMap::from([("K".into(), "V".into())]),
            processes_per_host: 2,
        },
        activation_timeout_ms: 60_000,
        placement_timeout_ms: 60_000,
        health_check_interval_ms: 5_000,
        process_ending_grace_ms: 120_000,
        max_placement_attempts: 3,
        scaling: Default::default(),
        labels: Default::default(),
        version: 0,
        updated_at: 0,
        host_target: None,
    }
}

/// Commands touching the internally tagged enums (`ServerMode`,
/// `ExitReason`) so that the codec is exercised on log and snapshot.
pub(crate) fn tagged_enum_commands() -> Vec<Command> {
    let host = HostId::new_unchecked("host-1");
    let process = ProcessId::new_unchecked("proc-1");
    vec![
        put(0),
        Command::PutFleet(fleet()),
        Command::RegisterHost {
            host: Host {
                id: host.clone(),
                fleet_id: FleetId::new_unchecked("fleet-1"),
                ip: "10.0.0.1".into(),
                registered_at: 1,
            },
            live: vec![],
            live_vs: vec![],
        },
        Command::ProcessStarted {
            process_id: process.clone(),
            host_id: host,
            pid: 42,
            fleet_version: 0,
        },
        Command::ProcessExited {
            process_id: process,
            reason: ExitReason::Exited {
                code: Some(3),
                signal: None,
            },
        },
    ]
}

fn node_info() -> NodeInfo {
    NodeInfo {
        raft_addr: "127.0.0.1:7001".into(),
        http_addr: "127.0.0.1:8001".into(),
    }
}

fn test_settings() -> RaftSettings {
    RaftSettings {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 150,
        election_timeout_max_ms: 300,
        ..RaftSettings::default()
    }
}

async fn open_single(dir: &Path, settings: RaftSettings) -> Consensus {
    let c = Consensus::open(NODE, dir, settings, SingleNodeNetwork)
        .await
        .unwrap();
    c.initialize_single_node(node_info()).await.unwrap();
    assert_eq!(c.wait_for_leader(T).await.unwrap(), NODE);
    c
}

/// Waits (polling, with a deadline) until `cond` holds.
pub(crate) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ----- openraft's storage conformance suite -----

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), openraft::StorageError<u64>> {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = LogStore::open(&dir.path().join(LOG_FILE)).unwrap();
        let (sm, _) = StateMachineStore::open(dir.path()).unwrap();
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}

// ----- the handle on a one-member cluster -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propose_changes_state_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let c = open_single(dir.path(), test_settings()).await;

    assert_eq!(c.propose(put(1)).await.unwrap(), Applied::Done);
    let tr = c.read(|s| s.title_regions.get(&title_region(1).id).cloned());
    assert_eq!(tr, Some(title_region(1)));

    // A refused command comes back as Rejected and changes nothing.
    let before = c.read(|s| s.clone());
    let mut bad = title_region(2);
    bad.secret_key = "short".into();
    let err = c.propose(Command::PutTitleRegion(bad)).await.unwrap_err();
    assert!(
        matches!(err, ConsensusError::Rejected(Rejection::BadRequest(_))),
        "{err:?}"
    );
    assert_eq!(c.read(|s| s.clone()), before);

    // Reads after ensure_linearizable see every committed write.
    c.ensure_linearizable().await.unwrap();
    assert_eq!(c.leader(), Some((NODE, node_info())));
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_replays_the_committed_log() {
    let dir = tempfile::tempdir().unwrap();
    let c = open_single(dir.path(), test_settings()).await;
    for cmd in tagged_enum_commands() {
        c.propose(cmd).await.unwrap();
    }
    let mut last = 0;
    for n in 1..=20 {
        last = c
            .propose_request(Request {
                at: 1000 + u64::from(n),
                command: put(n),
            })
            .await
            .unwrap()
            .index;
    }
    let before = c.read(|s| s.clone());
    assert_eq!(before.title_regions.len(), 21);
    assert_eq!(
        before.fleets[&fleet().id].mode,
        ServerMode::Parallel { max_sessions: 3 }
    );
    c.shutdown().await.unwrap();
    drop(c);

    let c = Consensus::open(NODE, dir.path(), test_settings(), SingleNodeNetwork)
        .await
        .unwrap();
    // Committed entries are re-applied before `open` returns.
    assert!(c.state().applied_index() >= Some(last));
    assert_eq!(c.read(|s| s.clone()), before);
    // Idempotent across restarts.
    c.initialize_single_node(node_info()).await.unwrap();
    c.wait_applied(last, T).await.unwrap();
    assert_eq!(c.read(|s| s.clone()), before);
    // Nothing was purged: the state came from the log alone.
    assert_eq!(c.metrics().borrow().purged, None);
    assert_eq!(c.wait_for_leader(T).await.unwrap(), NODE);
    assert_eq!(c.propose(put(99)).await.unwrap(), Applied::Done);
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_snapshot_plus_remaining_log() {
    let dir = tempfile::tempdir().unwrap();
    let settings = RaftSettings {
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 0,
        ..test_settings()
    };
    let c = open_single(dir.path(), settings.clone()).await;
    for cmd in tagged_enum_commands() {
        c.propose(cmd).await.unwrap();
    }
    for n in 1..=10 {
        c.propose(put(n)).await.unwrap();
    }
    let snap_index = c.state().applied_index().unwrap();

    c.raft().trigger().snapshot().await.unwrap();
    c.raft()
        .wait(Some(T))
        .metrics(|m| m.snapshot.index() >= Some(snap_index), "snapshot built")
        .await
        .unwrap();
    c.raft().trigger().purge_log(snap_index).await.unwrap();
    c.raft()
        .wait(Some(T))
        .metrics(|m| m.purged.index() >= Some(snap_index), "log purged")
        .await
        .unwrap();

    // Entries after the snapshot live only in the log.
    let mut last = 0;
    for n in 11..=15 {
        last = c
            .propose_request(Request {
                at: 7,
                command: put(n),
            })
            .await
            .unwrap()
            .index;
    }
    let before = c.read(|s| s.clone());
    assert_eq!(before.title_regions.len(), 16);
    let snapshot = c.metrics().borrow().snapshot;
    c.shutdown().await.unwrap();
    drop(c);

    let c = Consensus::open(NODE, dir.path(), settings, SingleNodeNetwork)
        .await
        .unwrap();
    c.wait_applied(last, T).await.unwrap();
    assert_eq!(c.read(|s| s.clone()), before);
    {
        let m = c.metrics();
        let m = m.borrow();
        assert_eq!(m.snapshot, snapshot, "snapshot reloaded");
        assert!(
            m.purged.index() >= Some(snap_index),
            "log stays purged: {:?}",
            m.purged
        );
    }
    let process = c.read(|s| s.processes[&ProcessId::new_unchecked("proc-1")].clone());
    assert_eq!(
        process.exit,
        Some(ExitReason::Exited {
            code: Some(3),
            signal: None
        })
    );
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_gated_by_go_live() {
    let dir = tempfile::tempdir().unwrap();
    let c = open_single(dir.path(), test_settings()).await;
    for n in 1..=3 {
        c.propose(put(n)).await.unwrap();
    }

    let (tx, mut rx) = mpsc::unbounded_channel();
    let state = c.go_live(tx);
    assert_eq!(
        state.title_regions.len(),
        3,
        "state at go_live has the earlier entries"
    );
    assert!(
        rx.try_recv().is_err(),
        "nothing before go_live is delivered"
    );

    let mut indexes = Vec::new();
    for n in 4..=8 {
        indexes.push(
            c.propose_request(Request {
                at: 1,
                command: put(n),
            })
            .await
            .unwrap()
            .index,
        );
    }
    // Events are sent inside apply, before the proposer is answered.
    for (n, want) in (4..=8).zip(&indexes) {
        let (index, events) = rx.try_recv().unwrap();
        assert_eq!(index, *want);
        assert_eq!(
            events,
            vec![Event::TitleRegionPut {
                title_region_id: title_region(n).id
            }]
        );
    }
    assert!(rx.try_recv().is_err(), "each entry exactly once");

    // A rejected command is delivered with no events.
    let mut bad = title_region(9);
    bad.secret_key = "short".into();
    c.propose(Command::PutTitleRegion(bad)).await.unwrap_err();
    let (index, events) = rx.try_recv().unwrap();
    assert!(index > indexes[4]);
    assert!(events.is_empty());
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_live_during_concurrent_proposals_has_no_gap_and_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let c = open_single(dir.path(), test_settings()).await;

    let mut tasks = Vec::new();
    for t in 0..4u32 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..25u32 {
                let n = t * 100 + i;
                let req = Request {
                    at: 1,
                    command: put(n),
                };
                mine.push((c.propose_request(req).await.unwrap().index, n));
            }
            mine
        }));
    }
    // Go live in the middle of the stream.
    eventually("some proposals applied", || {
        c.read(|s| s.title_regions.len()) >= 30
    })
    .await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (live_at, state) = c.state().go_live_indexed(tx);
    let live_at = live_at.unwrap();

    let mut proposed = Vec::new();
    for t in tasks {
        proposed.extend(t.await.unwrap());
    }
    assert_eq!(proposed.len(), 100);
    let mut delivered = Vec::new();
    while let Ok((index, events)) = rx.try_recv() {
        delivered.push((index, events));
    }
    assert!(
        !delivered.is_empty(),
        "go_live happened before the last proposal"
    );
    assert!(
        delivered.windows(2).all(|w| w[0].0 < w[1].0),
        "strictly increasing indexes: each entry once, in order"
    );
    // Every proposal is in the go_live state or in exactly one delivered
    // entry, never both, and under the index it was committed at.
    for (index, n) in &proposed {
        let id = title_region(*n).id;
        let in_state = state.title_regions.contains_key(&id);
        let event = Event::TitleRegionPut {
            title_region_id: id,
        };
        let hits: Vec<u64> = delivered
            .iter()
            .filter(|(_, evs)| evs.contains(&event))
            .map(|(i, _)| *i)
            .collect();
        if *index <= live_at {
            assert!(
                in_state && hits.is_empty(),
                "proposal {n} at {index} (live at {live_at})"
            );
        } else {
            assert!(
                !in_state && hits == vec![*index],
                "proposal {n} at {index}: {hits:?}"
            );
        }
    }
    let delivered_events: usize = delivered.iter().map(|(_, e)| e.len()).sum();
    assert_eq!(state.title_regions.len() + delivered_events, 100);
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_queued_during_a_commit_share_one_entry_and_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let c = open_single(dir.path(), test_settings()).await;
    let probe = c.log_probe().clone();
    let before = c.log_stats();

    // Hold the log writer: the first entry cannot become durable.
    probe.gate.close();
    let first = {
        let c = c.clone();
        tokio::spawn(async move {
            c.propose_request(Request {
                at: 1,
                command: put(0),
            })
            .await
        })
    };
    eventually("first entry appended", || {
        c.log_stats().entries_appended == before.entries_appended + 1
    })
    .await;
    // Proposals made meanwhile wait for it, together.
    let mut tasks = Vec::new();
    for n in 1..=32 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.propose_request(Request {
                at: 1,
                command: put(n),
            })
            .await
        }));
    }
    eventually("32 queued proposals", || c.queued_proposals() == 32).await;
    assert_eq!(c.log_stats().durable_commits, before.durable_commits);
    probe.gate.open();

    let first = first.await.unwrap().unwrap();
    let mut indexes = Vec::new();
    for t in tasks {
        let committed = t.await.unwrap().unwrap();
        assert_eq!(committed.applied, Applied::Done);
        indexes.push(committed.index);
    }
    indexes.dedup();
    assert_eq!(indexes.len(), 1, "the 32 share one entry");
    assert!(indexes[0] > first.index);
    let after = c.log_stats();
    assert_eq!(after.entries_written - before.entries_written, 2);
    assert_eq!(
        after.durable_commits - before.durable_commits,
        2,
        "33 proposals, 2 fsyncs: {after:?}"
    );
    assert_eq!(c.read(|s| s.title_regions.len()), 33);
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_to_consensus_errors() {
    // Not initialised: no leader to write through.
    let dir = tempfile::tempdir().unwrap();
    let c = Consensus::open(NODE, dir.path(), test_settings(), SingleNodeNetwork)
        .await
        .unwrap();
    let err = c.propose(put(1)).await.unwrap_err();
    assert_eq!(err, ConsensusError::NotLeader { leader: None });
    let err = c
        .wait_applied(5, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(err, ConsensusError::Timeout(_)), "{err:?}");
    c.shutdown().await.unwrap();
    let err = c.propose(put(1)).await.unwrap_err();
    assert_eq!(err, ConsensusError::ShuttingDown);

    // Invalid settings are refused before anything is opened.
    let bad = RaftSettings {
        election_timeout_min_ms: 100,
        election_timeout_max_ms: 50,
        ..test_settings()
    };
    let err = Consensus::open(NODE, dir.path(), bad, SingleNodeNetwork)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ConsensusError::Config(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_is_opened_once_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let c = open_single(dir.path(), test_settings()).await;
    let err = Consensus::open(NODE, dir.path(), test_settings(), SingleNodeNetwork)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ConsensusError::Storage(_)), "{err:?}");
    c.shutdown().await.unwrap();
    let c = Consensus::open(NODE, dir.path(), test_settings(), SingleNodeNetwork)
        .await
        .unwrap();
    c.shutdown().await.unwrap();
}

// ----- figures -----

/// Latency of one proposer and throughput of N concurrent proposers, with
/// fsyncs per entry. Run with:
/// `cargo test -p respawn-consensus --release -- --ignored --nocapture propose_figures`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; prints figures"]
async fn propose_figures() {
    let dir = tempfile::tempdir().unwrap();
    let settings = RaftSettings {
        snapshot_policy: SnapshotPolicy::Never,
        ..test_settings()
    };
    let c = open_single(dir.path(), settings).await;

    let mut lat = Vec::new();
    let s0 = c.log_stats();
    for n in 0..300 {
        let t = Instant::now();
        c.propose(put(n)).await.unwrap();
        lat.push(t.elapsed());
    }
    let s1 = c.log_stats();
    lat.sort_unstable();
    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)];
    println!(
        "sequential: n=300 p50={:?} p90={:?} p99={:?} max={:?}; fsyncs/proposal={:.2}",
        pct(50),
        pct(90),
        pct(99),
        lat[lat.len() - 1],
        (s1.durable_commits - s0.durable_commits) as f64 / 300.0,
    );

    for conc in [1u32, 4, 16, 64, 256] {
        let total = 2560u32;
        let per = total / conc;
        let s0 = c.log_stats();
        let t = Instant::now();
        let mut tasks = Vec::new();
        for k in 0..conc {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..per {
                    c.propose(put(1_000_000 + k * per + i)).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let el = t.elapsed();
        let s1 = c.log_stats();
        let fsyncs = s1.durable_commits - s0.durable_commits;
        println!(
            "concurrency {conc:>3}: {total} proposals in {el:?} = {:.0}/s; log entries={} fsyncs={fsyncs} fsyncs/proposal={:.3}",
            f64::from(total) / el.as_secs_f64(),
            s1.entries_written - s0.entries_written,
            fsyncs as f64 / f64::from(total),
        );
    }
    c.shutdown().await.unwrap();
}
