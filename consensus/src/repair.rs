//! Offline repair of a member's stored membership:
//! [`force_new_cluster`], Respawn's counterpart of etcd's
//! `--force-new-cluster` and Consul's `peers.json`.
//!
//! When the voters a configuration needs are gone for good (a cluster of
//! three that lost two, or a change that added a node which never came up),
//! no leader can commit anything, and Raft offers no way back online. The
//! repair runs on a survivor's data directory while its node is stopped: it
//! appends to the log, after everything already there, a membership entry
//! that makes this node the only voter (every other member dropped), in a
//! new term, and records a vote for itself in that term. On start the node
//! is the only voter of its last configuration, so it elects itself and
//! commits everything in its log, the repair entry included. As with etcd,
//! entries that were appended but not known to be committed are kept and
//! become committed; nothing committed is lost.
//!
//! The removed nodes must not come back with their old data: wipe their
//! data directories and add them again (`/admin/cluster/join`).

use crate::codec;
use crate::error::ConsensusError;
use crate::handle::LOG_FILE;
use crate::log_store::{KEY_LAST_PURGED, KEY_VOTE, LOGS, META};
use crate::types::{Entry, LogId, NodeInfo, Vote};
use openraft::{CommittedLeaderId, EntryPayload, Membership};
use redb::{ReadableDatabase, ReadableTable};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What [`force_new_cluster`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForcedCluster {
    /// Log index of the new single-member configuration.
    pub index: u64,
    /// The term of the vote it recorded.
    pub term: u64,
}

/// Rewrites the stored membership of the member whose Raft files are in
/// `dir` so that `node_id`, reached at `info`, is the only member (see the
/// module docs). The node must not be running (the files must be closed).
///
/// Returns `Ok(None)` when there is nothing to repair: no log yet (a fresh
/// directory, which bootstraps normally).
pub fn force_new_cluster(
    dir: &Path,
    node_id: u64,
    info: NodeInfo,
) -> Result<Option<ForcedCluster>, ConsensusError> {
    let path = dir.join(LOG_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let db = redb::Database::create(&path)
        .map_err(|e| ConsensusError::Storage(format!("open {}: {e}", path.display())))?;
    let (vote, last) = {
        let txn = db.begin_read().map_err(ConsensusError::storage)?;
        let meta = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(ConsensusError::storage(e)),
        };
        let vote: Option<Vote> = match meta.get(KEY_VOTE).map_err(ConsensusError::storage)? {
            Some(v) => Some(codec::decode(v.value()).map_err(ConsensusError::storage)?),
            None => None,
        };
        let purged: Option<LogId> =
            match meta.get(KEY_LAST_PURGED).map_err(ConsensusError::storage)? {
                Some(v) => codec::decode(v.value()).map_err(ConsensusError::storage)?,
                None => None,
            };
        let logs = txn.open_table(LOGS).map_err(ConsensusError::storage)?;
        let last_entry: Option<Entry> = match logs.last().map_err(ConsensusError::storage)? {
            Some((_, v)) => Some(codec::decode(v.value()).map_err(ConsensusError::storage)?),
            None => None,
        };
        (vote, last_entry.map(|e| e.log_id).or(purged))
    };
    let Some(last) = last else {
        return Ok(None);
    };
    // A term no member has used: above the vote's and the last entry's.
    let term = vote
        .map(|v| v.leader_id().get_term())
        .unwrap_or(0)
        .max(last.leader_id.term)
        + 1;
    let index = last.index + 1;
    let membership = Membership::new(
        vec![BTreeSet::from([node_id])],
        BTreeMap::from([(node_id, info)]),
    );
    let entry = Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, node_id), index),
        payload: EntryPayload::Membership(membership),
    };
    // Not committed: the node stands for election in a later term on start,
    // wins it alone, and commits a blank entry that commits this one.
    let vote = Vote::new(term, node_id);
    let txn = db.begin_write().map_err(ConsensusError::storage)?;
    {
        let mut logs = txn.open_table(LOGS).map_err(ConsensusError::storage)?;
        let bytes = codec::encode(&entry).map_err(ConsensusError::storage)?;
        logs.insert(index, bytes.as_slice())
            .map_err(ConsensusError::storage)?;
        let mut meta = txn.open_table(META).map_err(ConsensusError::storage)?;
        let bytes = codec::encode(&vote).map_err(ConsensusError::storage)?;
        meta.insert(KEY_VOTE, bytes.as_slice())
            .map_err(ConsensusError::storage)?;
    }
    txn.commit().map_err(ConsensusError::storage)?;
    Ok(Some(ForcedCluster { index, term }))
}
