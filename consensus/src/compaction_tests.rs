//! The snapshot trigger on a real one-member cluster: under a steady load
//! the log file stops growing and a restart replays a bounded tail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::tests::{put, T};
use crate::*;
use openraft::LogIdOptionExt;
use respawn_state::{Applied, Request};

fn node_info() -> NodeInfo {
    NodeInfo {
        raft_addr: "127.0.0.1:7001".into(),
        http_addr: "127.0.0.1:8001".into(),
    }
}

/// `n` proposals, 32 at a time (so that entries hold several commands).
async fn load(c: &Consensus, from: u32, n: u32) {
    let mut next = from;
    while next < from + n {
        let batch: Vec<_> = (next..(next + 32).min(from + n))
            .map(|k| {
                let c = c.clone();
                tokio::spawn(async move {
                    c.propose_request(Request {
                        at: 1,
                        command: put(k),
                    })
                    .await
                    .unwrap()
                })
            })
            .collect();
        for t in batch {
            assert_eq!(t.await.unwrap().applied, Applied::Done);
        }
        next += 32;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_bytes_trigger_bounds_the_log_file_and_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    let log_bytes = 64 * 1024;
    let settings = RaftSettings {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 150,
        election_timeout_max_ms: 300,
        snapshot_policy: SnapshotPolicy::Never,
        snapshot_trigger: SnapshotTrigger {
            commands: 0,
            log_bytes,
            retry_ms: 200,
        },
        max_in_snapshot_log_to_keep: 0,
        ..RaftSettings::default()
    };
    let c = Consensus::open(1, dir.path(), settings.clone(), SingleNodeNetwork)
        .await
        .unwrap();
    c.initialize_single_node(node_info()).await.unwrap();
    c.wait_for_leader(T).await.unwrap();

    // Rounds of the same load; the file size after each is printed.
    let file = dir.path().join(LOG_FILE);
    let mut sizes = Vec::new();
    let (rounds, per_round) = (24u32, 1500u32);
    for round in 0..rounds {
        load(&c, round * per_round, per_round).await;
        sizes.push(std::fs::metadata(&file).unwrap().len());
    }
    let stats = c.log_stats();
    let last_size = sizes[sizes.len() - 1];
    let m = c.metrics().borrow().clone();
    assert!(m.snapshot.is_some() && m.purged.is_some(), "{m:?}");
    // Snapshots may lag behind a burst (each is built off the apply path,
    // and the machine is shared), but once it ends the trigger catches up
    // and the log behind the last snapshot is purged.
    let last_index = c.metrics().borrow().last_log_index.unwrap();
    let m = c
        .raft()
        .wait(Some(T))
        .metrics(
            |m| m.purged.index().is_some_and(|p| p + 64 >= last_index),
            "the log purged up to the last snapshot",
        )
        .await
        .unwrap();

    // A restart replays what came after the last snapshot only.
    let total = u64::from(rounds * per_round);
    let before = c.read(|s| s.clone());
    let last = m.last_applied.index().unwrap();
    c.shutdown().await.unwrap();
    drop(c);
    let c = Consensus::open(1, dir.path(), settings, SingleNodeNetwork)
        .await
        .unwrap();
    c.wait_applied(last, T).await.unwrap();
    assert_eq!(c.read(|s| s.clone()), before);
    // Opening compacted the file: it holds little more than the log kept.
    let compacted = std::fs::metadata(&file).unwrap().len();
    assert!(
        compacted <= last_size && compacted < stats.bytes_appended / 4,
        "{compacted} bytes after compaction, {last_size} before; {} appended",
        stats.bytes_appended
    );
    let replayed = c.state().commands_applied();
    let per_command = stats.bytes_appended / total;
    assert!(
        replayed * per_command <= 3 * log_bytes,
        "replayed {replayed} commands of {total} ({per_command} bytes each)"
    );
    println!(
        "log file sizes per round: {sizes:?}; {compacted} after compaction; \
         replayed {replayed} of {total} commands"
    );
    c.shutdown().await.unwrap();
}
