//! [`crate::force_new_cluster`] on a member whose last configuration can
//! never commit (a joint change to a voter that never answered).

use crate::tests::{eventually, put, title_region};
use crate::*;
use respawn_state::Applied;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn info(n: u64) -> NodeInfo {
    NodeInfo {
        raft_addr: format!("127.0.0.1:{}", 7000 + n),
        http_addr: format!("127.0.0.1:{}", 8000 + n),
    }
}

fn settings() -> RaftSettings {
    RaftSettings {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 150,
        election_timeout_max_ms: 300,
        ..RaftSettings::default()
    }
}

async fn open(dir: &Path) -> Consensus {
    Consensus::open(1, dir, settings(), SingleNodeNetwork)
        .await
        .unwrap()
}

/// Whether a proposal commits within a second.
async fn commits(c: &Consensus, n: u32) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(1), c.propose(put(n))).await,
        Ok(Ok(Applied::Done))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_new_cluster_revives_a_member_stuck_in_a_joint_change() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        force_new_cluster(dir.path(), 1, info(1)).unwrap(),
        None,
        "nothing to repair yet"
    );
    let c = open(dir.path()).await;
    c.initialize_single_node(info(1)).await.unwrap();
    c.wait_for_leader(T).await.unwrap();
    for n in 1..=5 {
        assert_eq!(c.propose(put(n)).await.unwrap(), Applied::Done);
    }
    // The misuse: a learner that never answers, promoted.
    c.add_learner_committed(2, info(2)).await.unwrap();
    let stuck = c.clone();
    let change = tokio::spawn(async move { stuck.change_membership(BTreeSet::from([1, 2])).await });
    eventually("the joint configuration appended", || c.membership().joint).await;
    assert!(
        !commits(&c, 6).await,
        "a joint {{1}},{{1,2}} cannot commit without 2"
    );
    assert!(!c.membership_committed().await.unwrap());
    c.shutdown().await.unwrap();
    let _ = change.await;
    drop(c);

    // Restarting does not help: the configuration is in the log.
    let c = open(dir.path()).await;
    assert!(c.membership_now().await.unwrap().joint);
    assert!(!commits(&c, 7).await);
    c.shutdown().await.unwrap();
    drop(c);

    let forced = force_new_cluster(dir.path(), 1, info(1)).unwrap().unwrap();
    let c = open(dir.path()).await;
    assert_eq!(c.wait_for_leader(T).await.unwrap(), 1);
    c.wait_applied(forced.index, T).await.unwrap();
    let view = c.membership();
    assert_eq!(view.voters, BTreeSet::from([1]));
    assert!(view.learners.is_empty() && !view.joint, "{view:?}");
    assert_eq!(view.nodes.get(&1), Some(&info(1)));
    assert!(c.membership_committed().await.unwrap());
    // Everything committed before is there; new writes commit.
    for n in 1..=5 {
        let id = title_region(n).id;
        assert!(
            c.read(|s| s.title_regions.contains_key(&id)),
            "region {n} kept"
        );
    }
    assert!(commits(&c, 8).await);
    c.shutdown().await.unwrap();
    drop(c);

    // And it starts again as a healthy cluster of one.
    let c = open(dir.path()).await;
    assert_eq!(c.wait_for_leader(T).await.unwrap(), 1);
    assert!(commits(&c, 9).await);
    c.shutdown().await.unwrap();
}
