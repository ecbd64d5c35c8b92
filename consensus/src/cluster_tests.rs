//! Multi-member clusters: real openraft members, each with its own redb
//! files in a temporary directory, talking through the node transport seam
//! (`MemRouter` with fault injection, and real QUIC on loopback). Every
//! wait is on a condition with a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::tests::{eventually, put, tagged_enum_commands, title_region, T};
use crate::types::{SnapshotMeta, StoredMembership};
use crate::*;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use openraft::error::{InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest,
};
use openraft::{LogIdOptionExt, ServerState, SnapshotSegmentId};
use respawn_net::{
    node_name, serve_node_link, Endpoint, Handler, MemRouter, PeerKind, Pki, QuicTransport, Service,
};
use respawn_state::*;
use respawn_types::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::sync::mpsc;

// ----- fixtures -----

/// Routes `Service::Raft` to the member's `handle_raft`.
struct RaftHandler(Consensus);

impl Handler for RaftHandler {
    fn handle(&self, _from: NodeId, service: Service, payload: Bytes) -> BoxFuture<'static, Bytes> {
        let c = self.0.clone();
        async move {
            match service {
                Service::Raft => c.handle_raft(payload).await,
                Service::Cluster => Bytes::new(),
            }
        }
        .boxed()
    }
}

fn info(id: u64) -> NodeInfo {
    NodeInfo {
        raft_addr: format!("node-{id}.test:7400"),
        http_addr: format!("node-{id}.test:8080"),
    }
}

fn settings() -> RaftSettings {
    RaftSettings {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        ..RaftSettings::default()
    }
}

/// Members on one `MemRouter`, each in its own directory.
struct MemCluster {
    router: Arc<MemRouter>,
    settings: RaftSettings,
    dirs: BTreeMap<u64, TempDir>,
    nodes: BTreeMap<u64, Consensus>,
}

impl MemCluster {
    /// `n` members (ids 1..=n), opened but not initialised.
    async fn open(n: u64, settings: RaftSettings) -> MemCluster {
        let mut cluster = MemCluster {
            router: MemRouter::with_seed(42),
            settings,
            dirs: BTreeMap::new(),
            nodes: BTreeMap::new(),
        };
        for id in 1..=n {
            cluster.dirs.insert(id, tempfile::tempdir().unwrap());
            cluster.open_node(id).await;
        }
        cluster
    }

    /// `n` members, initialised together, with a leader elected.
    async fn start(n: u64, settings: RaftSettings) -> MemCluster {
        let cluster = Self::open(n, settings).await;
        let members = (1..=n).map(|id| (id, info(id))).collect();
        cluster.nodes[&1].initialize(members).await.unwrap();
        cluster.leader().await;
        cluster
    }

    /// Opens member `id` from its directory and connects it to the router.
    async fn open_node(&mut self, id: u64) {
        let network = TransportNetwork::new(self.router.transport(id));
        let c = Consensus::open(id, self.dirs[&id].path(), self.settings.clone(), network)
            .await
            .unwrap();
        self.router.register(id, Arc::new(RaftHandler(c.clone())));
        self.nodes.insert(id, c);
    }

    fn node(&self, id: u64) -> &Consensus {
        &self.nodes[&id]
    }

    /// Waits until all members agree on a leader, which is one of them
    /// and considers itself the leader.
    async fn leader(&self) -> u64 {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        self.leader_among(&ids).await
    }

    async fn leader_among(&self, ids: &[u64]) -> u64 {
        let deadline = Instant::now() + T;
        loop {
            let seen: BTreeSet<Option<u64>> = ids
                .iter()
                .map(|id| self.nodes[id].metrics().borrow().current_leader)
                .collect();
            if let [Some(l)] = seen.iter().copied().collect::<Vec<_>>()[..] {
                if ids.contains(&l) && self.nodes[&l].is_leader() {
                    return l;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader among {ids:?}: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_applied(&self, ids: &[u64], index: u64) {
        for id in ids {
            self.nodes[id].wait_applied(index, T).await.unwrap();
        }
    }

    /// Asserts that the members' states are equal; returns that state.
    fn assert_equal(&self, ids: &[u64]) -> ClusterState {
        let first = self.nodes[&ids[0]].read(|s| s.clone());
        for id in &ids[1..] {
            assert_eq!(
                self.nodes[id].read(|s| s.clone()),
                first,
                "state of {id} differs from {}",
                ids[0]
            );
        }
        first
    }

    async fn shutdown(&self) {
        for c in self.nodes.values() {
            c.shutdown().await.unwrap();
        }
    }
}

fn has_region(c: &Consensus, n: u32) -> bool {
    c.read(|s| s.title_regions.contains_key(&title_region(n).id))
}

/// Proposes `put(n)` for each `n` on `c`; returns the last log index.
async fn propose_all(c: &Consensus, ns: impl IntoIterator<Item = u32>) -> u64 {
    let mut last = 0;
    for n in ns {
        let committed = c
            .propose_request(Request {
                at: 1,
                command: put(n),
            })
            .await
            .unwrap();
        assert_eq!(committed.applied, Applied::Done);
        last = committed.index;
    }
    last
}

// ----- encoding -----

#[tokio::test]
async fn raft_rpcs_round_trip_through_their_encoding() {
    // Log entries whose commands use internally tagged enums.
    let dir = tempfile::tempdir().unwrap();
    let c = Consensus::open(1, dir.path(), settings(), SingleNodeNetwork)
        .await
        .unwrap();
    c.initialize(BTreeMap::from([(1, info(1))])).await.unwrap();
    c.wait_for_leader(T).await.unwrap();
    for cmd in tagged_enum_commands() {
        c.propose(cmd).await.unwrap();
    }
    let last = c.state().applied_index().unwrap();
    c.shutdown().await.unwrap();
    let entries = {
        use openraft::storage::RaftLogReader;
        let (mut log, _closed) = LogStore::open(&dir.path().join(LOG_FILE)).unwrap();
        log.try_get_log_entries(0..=last).await.unwrap()
    };
    assert!(entries.len() as u64 > 5);
    let vote = openraft::Vote::new_committed(3, 1);
    let append = AppendEntriesRequest::<TypeConfig> {
        vote,
        prev_log_id: Some(openraft::LogId::new(
            openraft::CommittedLeaderId::new(2, 1),
            7,
        )),
        leader_commit: Some(openraft::LogId::new(
            openraft::CommittedLeaderId::new(3, 1),
            last,
        )),
        entries: entries.clone(),
    };
    match RaftRpc::decode(&RaftRpc::AppendEntries(append.clone()).encode().unwrap()).unwrap() {
        RaftRpc::AppendEntries(back) => {
            assert_eq!(back.vote, append.vote);
            assert_eq!(back.prev_log_id, append.prev_log_id);
            assert_eq!(back.leader_commit, append.leader_commit);
            assert_eq!(back.entries, append.entries);
        }
        other => panic!("{other:?}"),
    }
    let vote_req = VoteRequest::new(
        vote,
        Some(openraft::LogId::new(
            openraft::CommittedLeaderId::new(3, 1),
            9,
        )),
    );
    match RaftRpc::decode(&RaftRpc::Vote(vote_req.clone()).encode().unwrap()).unwrap() {
        RaftRpc::Vote(back) => assert_eq!(back, vote_req),
        other => panic!("{other:?}"),
    }
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let chunk = InstallSnapshotRequest::<TypeConfig> {
        vote,
        meta: SnapshotMeta {
            last_log_id: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(3, 1),
                40,
            )),
            last_membership: StoredMembership::default(),
            snapshot_id: "3-1-40-123".into(),
        },
        offset: 4096,
        data: data.clone(),
        done: false,
    };
    let encoded = RaftRpc::InstallSnapshot(chunk.clone()).encode().unwrap();
    // The data travels as raw bytes, not as a JSON array of numbers.
    assert!(encoded.len() < data.len() + 1024, "{} bytes", encoded.len());
    match RaftRpc::decode(&encoded).unwrap() {
        RaftRpc::InstallSnapshot(back) => assert_eq!(back, chunk),
        other => panic!("{other:?}"),
    }

    // Replies, and errors as remote errors.
    let ok: Result<AppendEntriesResponse<u64>, RaftError<u64>> =
        Ok(AppendEntriesResponse::HigherVote(vote));
    let back = rpc::WireReply::decode(&rpc::WireReply::of(&ok).encode())
        .unwrap()
        .into_result::<AppendEntriesResponse<u64>, RaftError<u64>>()
        .unwrap();
    assert_eq!(back, ok);
    let err: Result<(), RaftError<u64, InstallSnapshotError>> = Err(RaftError::APIError(
        InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
            expect: SnapshotSegmentId {
                id: "a".into(),
                offset: 0,
            },
            got: SnapshotSegmentId {
                id: "a".into(),
                offset: 10,
            },
        }),
    ));
    let back = rpc::WireReply::decode(&rpc::WireReply::of(&err).encode())
        .unwrap()
        .into_result::<(), RaftError<u64, InstallSnapshotError>>()
        .unwrap();
    assert_eq!(back, err);
    let fatal: Result<(), RaftError<u64>> = Err(RaftError::Fatal(openraft::error::Fatal::Stopped));
    let back = rpc::WireReply::decode(&rpc::WireReply::of(&fatal).encode())
        .unwrap()
        .into_result::<(), RaftError<u64>>()
        .unwrap();
    assert_eq!(back, fatal);

    // Garbage is an error, never a panic; a member answers it with a
    // refusal.
    for bad in [&b""[..], b"\x00", b"\x07\x01\x02", &[0xff; 64]] {
        assert!(RaftRpc::decode(bad).is_err());
    }
    let dir = tempfile::tempdir().unwrap();
    let c = Consensus::open(2, dir.path(), settings(), SingleNodeNetwork)
        .await
        .unwrap();
    let reply = c.handle_raft(Bytes::from_static(b"\x00\x05junk")).await;
    let refused = rpc::WireReply::decode(&reply)
        .unwrap()
        .into_result::<(), RaftError<u64>>();
    assert!(refused.is_err(), "{refused:?}");
    c.shutdown().await.unwrap();
}

#[test]
fn settings_bound_the_snapshot_chunk() {
    let ok = RaftSettings::default().to_openraft().unwrap();
    assert_eq!(ok.snapshot_max_chunk_size, 4 * 1024 * 1024);
    assert_eq!(ok.max_payload_entries, 64);
    for bad in [0, 16 * 1024 * 1024] {
        let s = RaftSettings {
            snapshot_chunk_bytes: bad,
            ..RaftSettings::default()
        };
        assert!(matches!(s.to_openraft(), Err(ConsensusError::Config(_))));
    }
}

// ----- clusters over MemRouter -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_one_leader_and_replicate() {
    let cluster = MemCluster::start(3, settings()).await;
    let all = [1, 2, 3];
    let leader = cluster.leader().await;
    let leaders = all
        .iter()
        .filter(|id| cluster.node(**id).is_leader())
        .count();
    assert_eq!(leaders, 1, "exactly one leader");
    for id in all {
        let view = cluster.node(id).membership();
        assert_eq!(view.voters, BTreeSet::from([1, 2, 3]));
        assert!(view.learners.is_empty());
        assert_eq!(view.nodes[&2], info(2));
        assert_eq!(cluster.node(id).leader(), Some((leader, info(leader))));
    }

    let last = propose_all(cluster.node(leader), 1..=10).await;
    cluster.wait_applied(&all, last).await;
    let state = cluster.assert_equal(&all);
    assert_eq!(state.title_regions.len(), 10);
    assert_eq!(state.title_regions[&title_region(7).id], title_region(7));
    assert!(cluster.router.stats(Service::Raft).delivered > 0);

    // A follower refuses, naming the leader.
    let follower = all.into_iter().find(|id| *id != leader).unwrap();
    let err = cluster.node(follower).propose(put(99)).await.unwrap_err();
    assert_eq!(
        err,
        ConsensusError::NotLeader {
            leader: Some(leader)
        }
    );
    assert_eq!(
        cluster.node(follower).read_index().await.unwrap_err(),
        ConsensusError::NotLeader {
            leader: Some(leader)
        }
    );
    let err = cluster
        .node(follower)
        .add_learner(9, info(9))
        .await
        .unwrap_err();
    assert!(matches!(err, ConsensusError::NotLeader { .. }), "{err:?}");

    // Follower read: the read index from the leader, then wait for it.
    let c = cluster.node(leader).propose_request(Request {
        at: 1,
        command: put(11),
    });
    let committed = c.await.unwrap();
    let index = cluster.node(leader).read_index().await.unwrap();
    assert!(index >= committed.index);
    cluster.node(follower).wait_applied(index, T).await.unwrap();
    assert!(has_region(cluster.node(follower), 11));
    cluster.shutdown().await;
}

/// Concurrent read-index requests on the leader share one heartbeat round
/// (one AppendEntries per follower), not one round each. On a
/// current-thread runtime the 64 requests are all queued before the
/// batching task runs, so exactly one round answers them; heartbeats and
/// elections are switched off so that nothing else is sent meanwhile.
#[tokio::test(flavor = "current_thread")]
async fn concurrent_read_index_requests_share_one_round() {
    let cluster = MemCluster::start(3, settings()).await;
    let leader = cluster.leader().await;
    let last = propose_all(cluster.node(leader), [1]).await;
    // Every follower has the commit index: nothing is left to replicate.
    cluster.wait_applied(&[1, 2, 3], last).await;
    for id in [1, 2, 3] {
        let rc = cluster.node(id).raft().runtime_config();
        rc.heartbeat(false);
        rc.elect(false);
    }
    let sent = |c: &MemCluster| c.router.stats(Service::Raft).sent;
    let before = sent(&cluster);
    let node = cluster.node(leader);
    let answers = futures::future::join_all((0..64).map(|_| node.read_index())).await;
    for a in &answers {
        assert!(*a.as_ref().unwrap() >= last, "{a:?} below {last}");
    }
    assert_eq!(
        sent(&cluster) - before,
        2,
        "64 reads on the leader of three: one round to the two followers"
    );
    // A read that starts after a write has completed sees it.
    let write = propose_all(cluster.node(leader), [2]).await;
    assert!(node.read_index().await.unwrap() >= write);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_commits_nothing_and_catches_up_after_healing() {
    let cluster = MemCluster::start(3, settings()).await;
    let all = [1, 2, 3];
    let old = cluster.leader().await;
    let last = propose_all(cluster.node(old), [1]).await;
    cluster.wait_applied(&all, last).await;

    cluster.router.isolate(old);
    let majority: Vec<u64> = all.into_iter().filter(|id| *id != old).collect();
    let new = cluster.leader_among(&majority).await;
    assert_ne!(new, old);
    let last = propose_all(cluster.node(new), [2]).await;
    cluster.wait_applied(&majority, last).await;

    // The old leader still thinks it leads; what it proposes cannot commit.
    let stale = {
        let c = cluster.node(old).clone();
        tokio::spawn(async move { c.propose(put(3)).await })
    };
    // Meanwhile the majority goes on.
    let last = propose_all(cluster.node(new), [4]).await;
    cluster.wait_applied(&majority, last).await;
    assert!(!stale.is_finished(), "a minority leader committed");
    assert!(!has_region(cluster.node(old), 2));

    cluster.router.heal();
    // Its uncommitted entry is overwritten; its proposer is told to go to
    // the leader.
    let answer = tokio::time::timeout(T, stale).await.unwrap().unwrap();
    assert!(
        matches!(answer, Err(ConsensusError::NotLeader { .. })),
        "{answer:?}"
    );
    let leader = cluster.leader().await;
    assert_ne!(leader, old, "the old leader's log is behind");
    let last = propose_all(cluster.node(leader), [5]).await;
    cluster.wait_applied(&all, last).await;
    let state = cluster.assert_equal(&all);
    for n in [1, 2, 4, 5] {
        assert!(state.title_regions.contains_key(&title_region(n).id), "{n}");
    }
    assert!(!state.title_regions.contains_key(&title_region(3).id));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_down_past_compaction_installs_a_snapshot() {
    let settings = RaftSettings {
        snapshot_policy: SnapshotPolicy::LogsSinceLast(10),
        max_in_snapshot_log_to_keep: 0,
        // Many chunks per snapshot.
        snapshot_chunk_bytes: 1024,
        ..settings()
    };
    let cluster = MemCluster::start(3, settings).await;
    let all = [1, 2, 3];
    let leader = cluster.leader().await;
    let down = all.into_iter().find(|id| *id != leader).unwrap();
    let last = propose_all(cluster.node(leader), [0]).await;
    cluster.wait_applied(&all, last).await;

    // The follower's owner receives events.
    let (tx, mut events) = mpsc::unbounded_channel();
    cluster.node(down).go_live(tx);

    cluster.router.unregister(down);
    let last = propose_all(cluster.node(leader), 1..=60).await;
    let c = cluster.node(leader);
    c.raft().trigger().snapshot().await.unwrap();
    c.raft()
        .wait(Some(T))
        .metrics(|m| m.snapshot.index() >= Some(last), "snapshot built")
        .await
        .unwrap();
    c.raft().trigger().purge_log(last).await.unwrap();
    c.raft()
        .wait(Some(T))
        .metrics(|m| m.purged.index() >= Some(last), "log purged")
        .await
        .unwrap();
    assert!(!has_region(cluster.node(down), 1));

    // Back: the log it misses is gone, so it gets the snapshot.
    cluster
        .router
        .register(down, Arc::new(RaftHandler(cluster.node(down).clone())));
    cluster.wait_applied(&all, last).await;
    let state = cluster.assert_equal(&all);
    assert_eq!(state.title_regions.len(), 61);
    let m = cluster.node(down).metrics().borrow().clone();
    assert!(
        m.snapshot.index() >= Some(last),
        "installed a snapshot: {:?}",
        m.snapshot
    );

    // The snapshot replaced its state: the event channel closed, so the
    // owner knows to go live again.
    let closed = tokio::time::timeout(T, async { while events.recv().await.is_some() {} }).await;
    assert!(closed.is_ok(), "event channel not closed");
    let (tx, mut events) = mpsc::unbounded_channel();
    let (at, state) = cluster.node(down).state().go_live_indexed(tx);
    assert!(at >= Some(last));
    assert_eq!(state.title_regions.len(), 61);
    let leader = cluster.leader().await;
    let next = propose_all(cluster.node(leader), [100]).await;
    cluster.node(down).wait_applied(next, T).await.unwrap();
    let (index, evs) = events.try_recv().unwrap();
    assert_eq!(index, next);
    assert_eq!(
        evs,
        vec![Event::TitleRegionPut {
            title_region_id: title_region(100).id
        }]
    );

    // go_dark stops delivery and closes the channel.
    cluster.node(down).go_dark();
    let next = propose_all(cluster.node(leader), [101]).await;
    cluster.node(down).wait_applied(next, T).await.unwrap();
    assert!(matches!(
        events.try_recv(),
        Err(mpsc::error::TryRecvError::Disconnected)
    ));
    cluster.shutdown().await;
}

/// Proposes `put(n)` for each `n` on `c`, all at once, so that the
/// batcher packs them into few entries; returns the highest log index.
async fn propose_concurrently(c: &Consensus, ns: impl IntoIterator<Item = u32>) -> u64 {
    let tasks: Vec<_> = ns
        .into_iter()
        .map(|n| {
            let c = c.clone();
            tokio::spawn(async move {
                c.propose_request(Request {
                    at: 1,
                    command: put(n),
                })
                .await
                .unwrap()
            })
        })
        .collect();
    let mut last = 0;
    for t in tasks {
        let committed = t.await.unwrap();
        assert_eq!(committed.applied, Applied::Done);
        last = last.max(committed.index);
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_trigger_snapshots_purges_and_a_lagging_follower_installs_it() {
    // openraft never snapshots by itself here: only the command-count
    // trigger (crate::compaction) can.
    let settings = RaftSettings {
        snapshot_policy: SnapshotPolicy::Never,
        snapshot_trigger: SnapshotTrigger {
            commands: 100,
            log_bytes: 0,
            retry_ms: 1_000,
        },
        max_in_snapshot_log_to_keep: 0,
        snapshot_chunk_bytes: 1024,
        ..settings()
    };
    let cluster = MemCluster::start(3, settings).await;
    let all = [1, 2, 3];
    let leader = cluster.leader().await;
    let down = all.into_iter().find(|id| *id != leader).unwrap();
    cluster.router.unregister(down);

    // 400 commands, proposed concurrently: far fewer log entries.
    let c = cluster.node(leader);
    let entries_before = c.log_stats().entries_appended;
    let last = propose_concurrently(c, 0..400).await;
    let entries = c.log_stats().entries_appended - entries_before;
    assert!(entries < 400, "{entries} entries for 400 commands");
    let m = c
        .raft()
        .wait(Some(T))
        .metrics(
            |m| m.snapshot.is_some() && m.purged.is_some(),
            "snapshot built by the command trigger and the log purged behind it",
        )
        .await
        .unwrap();
    let snap = m.snapshot.index().unwrap();
    assert!(m.purged.index().unwrap() <= snap);

    // Back: what it misses is purged, so it gets the snapshot, in chunks.
    cluster
        .router
        .register(down, Arc::new(RaftHandler(cluster.node(down).clone())));
    cluster.wait_applied(&all, last).await;
    let state = cluster.assert_equal(&all);
    assert_eq!(state.title_regions.len(), 400);
    let m = cluster.node(down).metrics().borrow().clone();
    assert!(
        m.snapshot.is_some(),
        "installed a snapshot: {:?}",
        m.snapshot
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_restart_keeps_the_committed_state() {
    let mut cluster = MemCluster::start(3, settings()).await;
    let all = [1, 2, 3];
    let leader = cluster.leader().await;
    for cmd in tagged_enum_commands() {
        cluster.node(leader).propose(cmd).await.unwrap();
    }
    let last = propose_all(cluster.node(leader), 1..=20).await;
    cluster.wait_applied(&all, last).await;
    let before = cluster.assert_equal(&all);
    cluster.shutdown().await;

    for id in all {
        cluster.router.unregister(id);
    }
    for id in all {
        cluster.open_node(id).await;
        // Committed entries are re-applied before `open` returns.
        assert_eq!(cluster.node(id).read(|s| s.clone()), before, "node {id}");
    }
    // Idempotent on an initialised cluster.
    let members = all.iter().map(|id| (*id, info(*id))).collect();
    cluster.node(2).initialize(members).await.unwrap();
    let leader = cluster.leader().await;
    let last = propose_all(cluster.node(leader), [21]).await;
    cluster.wait_applied(&all, last).await;
    let after = cluster.assert_equal(&all);
    assert_eq!(after.title_regions.len(), before.title_regions.len() + 1);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_as_learners_become_voters_and_leave() {
    let cluster = MemCluster::open(3, settings()).await;
    let one = cluster.node(1);
    one.initialize(BTreeMap::from([(1, info(1))]))
        .await
        .unwrap();
    assert_eq!(one.wait_for_leader(T).await.unwrap(), 1);
    let first = propose_all(one, 1..=5).await;

    // Learners catch up before add_learner returns.
    one.add_learner(2, info(2)).await.unwrap();
    one.add_learner(3, info(3)).await.unwrap();
    let view = one.membership();
    assert_eq!(view.voters, BTreeSet::from([1]));
    assert_eq!(view.learners, BTreeSet::from([2, 3]));
    assert_eq!(view.nodes.len(), 3);
    cluster.wait_applied(&[2, 3], first).await;
    assert!(has_region(cluster.node(3), 5));
    assert_eq!(
        cluster.node(2).metrics().borrow().state,
        ServerState::Learner
    );

    cluster
        .node(1)
        .change_membership(BTreeSet::from([1, 2, 3]))
        .await
        .unwrap();
    for id in [1, 2, 3] {
        let node = cluster.node(id);
        eventually("membership applied", || {
            let v = node.membership();
            v.voters == BTreeSet::from([1, 2, 3]) && v.learners.is_empty() && !v.joint
        })
        .await;
    }
    let leader = cluster.leader().await;
    let last = propose_all(cluster.node(leader), [6]).await;
    cluster.wait_applied(&[1, 2, 3], last).await;
    cluster.assert_equal(&[1, 2, 3]);

    // Remove 3 (whoever leads now does it).
    cluster
        .node(leader)
        .change_membership(BTreeSet::from([1, 2]))
        .await
        .unwrap();
    let leader = cluster.leader_among(&[1, 2]).await;
    let view = cluster.node(leader).membership();
    assert_eq!(view.voters, BTreeSet::from([1, 2]));
    assert!(view.learners.is_empty());
    assert!(!view.nodes.contains_key(&3));
    let last = propose_all(cluster.node(leader), [7]).await;
    cluster.wait_applied(&[1, 2], last).await;
    cluster.assert_equal(&[1, 2]);
    assert!(
        !has_region(cluster.node(3), 7),
        "a removed member gets nothing"
    );
    cluster.shutdown().await;
}

mod catch_up;
mod network;
