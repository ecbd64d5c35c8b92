//! The state machine: the [`ClusterState`] in memory, its snapshots in
//! `<dir>/snapshot.redb`, and the gated event stream.
//!
//! The state is not written on apply; snapshots are. At start-up the latest
//! snapshot is loaded and openraft re-applies the committed log after it
//! (the log store keeps the committed log id for that).
//!
//! Events: after each applied normal entry (a batch of requests),
//! `(index, events of its requests in order)` is sent to
//! the [`EventSink`] once the owner has called [`StateHandle::go_live`].
//! `go_live` takes the same lock as apply, so the state it returns and the
//! events sent afterwards fit together with neither gap nor overlap.

use crate::codec;
use crate::db::{Closed, DbFile};
use crate::error::ConsensusError;
use crate::types::{
    BatchResponse, Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, StorageIOError};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use respawn_state::ClusterState;
use respawn_state::Event;
use std::cell::RefCell;
use std::io::Cursor;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Where applied events go: `(log index, events of that entry)`.
pub type EventSink = tokio::sync::mpsc::UnboundedSender<(u64, Vec<Event>)>;

/// The latest snapshot: key → bytes.
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
/// Encoded [`SnapshotMeta`].
const KEY_META: &str = "meta";
/// Encoded [`ClusterState`]: the snapshot data as sent to followers.
const KEY_DATA: &str = "data";

/// Everything behind the state machine's lock.
struct SmData {
    state: ClusterState,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    sink: Option<EventSink>,
}

/// Cheap, cloneable access to the applied state, for readers and for the
/// owner of the event stream.
#[derive(Clone)]
pub struct StateHandle {
    data: Arc<RwLock<SmData>>,
    /// Requests applied since this member started (start-up replay
    /// included), for the snapshot trigger (`crate::compaction`).
    commands_applied: Arc<AtomicU64>,
    /// `commands_applied` as of the state in the latest snapshot built or
    /// installed.
    commands_at_snapshot: Arc<AtomicU64>,
}

thread_local! {
    /// The state locks this thread holds for reading, by address (see
    /// [`Reading`]).
    static READING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Marks a read of one state lock in progress on this thread, for as long
/// as its guard lives.
///
/// A second read of the same lock on the same thread while the first is
/// held (a reader that calls out to code that reads the state too)
/// deadlocks as soon as apply asks for the write lock between the two:
/// std's `RwLock` makes new readers wait behind a waiting writer, and the
/// writer waits for the first read. Both threads then block for good —
/// with two runtime workers, the whole node stops, idle. Such a nested read
/// is a bug: it fails at once in debug builds (tests) and is logged in
/// release builds.
struct Reading(usize);

impl Reading {
    fn enter(lock: &Arc<RwLock<SmData>>) -> Reading {
        let key = Arc::as_ptr(lock) as usize;
        let nested = READING.with(|r| {
            let mut r = r.borrow_mut();
            let nested = r.contains(&key);
            r.push(key);
            nested
        });
        // Made before the check, so a failed check still unregisters it.
        let reading = Reading(key);
        if nested {
            tracing::error!(
                "the replicated state was read by a thread already reading it: \
                 that deadlocks once apply waits for the lock"
            );
        }
        debug_assert!(
            !nested,
            "nested read of the replicated state on one thread: it deadlocks as soon \
             as apply waits for the write lock; read what is needed, return, then call out"
        );
        reading
    }

    /// Whether this thread holds `lock` for reading.
    fn held(lock: &Arc<RwLock<SmData>>) -> bool {
        let key = Arc::as_ptr(lock) as usize;
        READING.with(|r| r.borrow().contains(&key))
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        READING.with(|r| {
            let mut r = r.borrow_mut();
            if let Some(i) = r.iter().rposition(|k| *k == self.0) {
                r.remove(i);
            }
        });
    }
}

/// A read guard of the state lock, registered as a [`Reading`].
struct ReadGuard<'a> {
    guard: RwLockReadGuard<'a, SmData>,
    _reading: Reading,
}

impl std::ops::Deref for ReadGuard<'_> {
    type Target = SmData;
    fn deref(&self) -> &SmData {
        &self.guard
    }
}

impl StateHandle {
    // A panic inside `ClusterState::apply` poisons the lock; Raft stops
    // then (its state machine task is gone), and readers still get the last
    // state, so poisoning is not propagated.
    fn read_guard(&self) -> ReadGuard<'_> {
        let reading = Reading::enter(&self.data);
        ReadGuard {
            guard: self.data.read().unwrap_or_else(PoisonError::into_inner),
            _reading: reading,
        }
    }

    fn write_guard(&self) -> RwLockWriteGuard<'_, SmData> {
        debug_assert!(
            !Reading::held(&self.data),
            "the replicated state written by a thread that reads it: deadlock"
        );
        self.data.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the applied state under the read lock. Keep `f` short:
    /// apply waits for it. `f` must not read this state again (directly or
    /// through anything that does): a nested read deadlocks against a
    /// waiting apply ([`Reading`]; it panics in debug builds).
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        f(&self.read_guard().state)
    }

    /// Requests (commands) applied since this member started, start-up
    /// replay included; a snapshot installed from the leader counts none.
    pub fn commands_applied(&self) -> u64 {
        self.commands_applied.load(Ordering::Relaxed)
    }

    /// Requests applied after the state of the latest snapshot (built or
    /// installed) by this member since it started.
    pub fn commands_since_snapshot(&self) -> u64 {
        self.commands_applied()
            .saturating_sub(self.commands_at_snapshot.load(Ordering::Relaxed))
    }

    /// Index of the last applied log entry.
    pub fn applied_index(&self) -> Option<u64> {
        self.read_guard().last_applied.map(|l| l.index)
    }

    /// Starts delivering events to `sink` and returns the state as of that
    /// moment. Every entry applied afterwards sends `(index, events)`
    /// exactly once, in index order; entries applied before (start-up
    /// replay included) are in the returned state and send nothing.
    ///
    /// Calling it again replaces the sink. The sink is dropped, closing the
    /// channel when it was its only sender, when its receiver is gone or
    /// when a snapshot from the leader replaces the whole state: the owner
    /// must then rebuild from a new `go_live`.
    pub fn go_live(&self, sink: EventSink) -> ClusterState {
        self.go_live_indexed(sink).1
    }

    /// [`StateHandle::go_live`], also returning the index of the last
    /// entry applied to the returned state: every event delivered later
    /// carries a greater index.
    pub fn go_live_indexed(&self, sink: EventSink) -> (Option<u64>, ClusterState) {
        let mut data = self.write_guard();
        data.sink = Some(sink);
        (data.last_applied.map(|l| l.index), data.state.clone())
    }

    /// Stops delivering events.
    pub fn go_dark(&self) {
        self.write_guard().sink = None;
    }
}

/// The Raft state machine (`RaftStateMachine`).
pub struct StateMachineStore {
    handle: StateHandle,
    file: Arc<DbFile>,
}

/// Builds snapshots off the state machine task.
pub struct SnapshotBuilder {
    handle: StateHandle,
    file: Arc<DbFile>,
}

fn snap_read_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::read_snapshot(None, AnyError::error(e)).into()
}

fn snap_write_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_snapshot(None, AnyError::error(e)).into()
}

/// A snapshot as persisted: its meta and its data bytes.
struct Stored {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

fn read_stored(db: &redb::Database) -> Result<Option<Stored>, ConsensusError> {
    let txn = db.begin_read().map_err(ConsensusError::storage)?;
    let table = txn.open_table(SNAPSHOT).map_err(ConsensusError::storage)?;
    let meta = table.get(KEY_META).map_err(ConsensusError::storage)?;
    let data = table.get(KEY_DATA).map_err(ConsensusError::storage)?;
    match (meta, data) {
        (Some(m), Some(d)) => Ok(Some(Stored {
            meta: codec::decode(m.value()).map_err(ConsensusError::storage)?,
            data: d.value().to_vec(),
        })),
        _ => Ok(None),
    }
}

/// Persists `stored` durably unless a newer snapshot is there already.
/// Returns whether it was written.
fn write_stored(db: &redb::Database, stored: &Stored) -> Result<bool, ConsensusError> {
    let meta = codec::encode(&stored.meta).map_err(ConsensusError::storage)?;
    let txn = db.begin_write().map_err(ConsensusError::storage)?;
    let written = {
        let mut table = txn.open_table(SNAPSHOT).map_err(ConsensusError::storage)?;
        let existing: Option<SnapshotMeta> =
            match table.get(KEY_META).map_err(ConsensusError::storage)? {
                Some(m) => Some(codec::decode(m.value()).map_err(ConsensusError::storage)?),
                None => None,
            };
        if existing.is_some_and(|e| e.last_log_id > stored.meta.last_log_id) {
            false
        } else {
            table
                .insert(KEY_META, meta.as_slice())
                .map_err(ConsensusError::storage)?;
            table
                .insert(KEY_DATA, stored.data.as_slice())
                .map_err(ConsensusError::storage)?;
            true
        }
    };
    // Default durability: Immediate (fsync before commit returns).
    txn.commit().map_err(ConsensusError::storage)?;
    Ok(written)
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ConsensusError> + Send + 'static,
) -> Result<T, ConsensusError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ConsensusError::storage)?
}

impl StateMachineStore {
    /// Opens (or creates) `path` and loads the latest snapshot from it.
    pub(crate) fn open(path: &Path) -> Result<(StateMachineStore, Closed), ConsensusError> {
        let (file, closed) = DbFile::open(path)?;
        {
            let txn = file.db.begin_write().map_err(ConsensusError::storage)?;
            txn.open_table(SNAPSHOT).map_err(ConsensusError::storage)?;
            txn.commit().map_err(ConsensusError::storage)?;
        }
        let data = match read_stored(&file.db)? {
            Some(stored) => SmData {
                state: codec::decode(&stored.data).map_err(ConsensusError::storage)?,
                last_applied: stored.meta.last_log_id,
                membership: stored.meta.last_membership,
                sink: None,
            },
            None => SmData {
                state: ClusterState::default(),
                last_applied: None,
                membership: StoredMembership::default(),
                sink: None,
            },
        };
        let handle = StateHandle {
            data: Arc::new(RwLock::new(data)),
            commands_applied: Arc::default(),
            commands_at_snapshot: Arc::default(),
        };
        Ok((StateMachineStore { handle, file }, closed))
    }

    /// The handle readers and the event owner use.
    pub fn handle(&self) -> StateHandle {
        self.handle.clone()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        // Apply waits only for this copy (under the read lock); encoding
        // and the fsynced write happen on a blocking thread while apply
        // goes on.
        let copy_started = std::time::Instant::now();
        let (state, last_applied, membership) = {
            let data = self.handle.read_guard();
            // Apply counts under the write lock: this is the count of the
            // state copied here.
            self.handle
                .commands_at_snapshot
                .store(self.handle.commands_applied(), Ordering::Relaxed);
            (
                data.state.clone(),
                data.last_applied,
                data.membership.clone(),
            )
        };
        let copy_ms = copy_started.elapsed().as_millis() as u64;
        let file = Arc::clone(&self.file);
        let stored = blocking(move || {
            let data = codec::encode(&state).map_err(ConsensusError::storage)?;
            let snapshot_id = match last_applied {
                Some(l) => format!(
                    "{}-{}-{}-{}",
                    l.leader_id.term,
                    l.leader_id.node_id,
                    l.index,
                    respawn_types::now_millis()
                ),
                None => format!("none-{}", respawn_types::now_millis()),
            };
            let stored = Stored {
                meta: SnapshotMeta {
                    last_log_id: last_applied,
                    last_membership: membership,
                    snapshot_id,
                },
                data,
            };
            write_stored(&file.db, &stored)?;
            Ok(stored)
        })
        .await
        .map_err(snap_write_err)?;
        tracing::info!(
            snapshot = %stored.meta,
            bytes = stored.data.len(),
            copy_ms,
            "snapshot built"
        );
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let data = self.handle.read_guard();
        Ok((data.last_applied, data.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut data = self.handle.write_guard();
        let data = &mut *data;
        let mut responses = Vec::new();
        for entry in entries {
            data.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => responses.push(Vec::new()),
                EntryPayload::Normal(batch) => {
                    let mut answers = Vec::with_capacity(batch.0.len());
                    let mut events = Vec::new();
                    for req in &batch.0 {
                        let (response, evs) = data.state.apply(req);
                        answers.push(response);
                        events.extend(evs);
                    }
                    self.handle
                        .commands_applied
                        .fetch_add(batch.0.len() as u64, Ordering::Relaxed);
                    if let Some(sink) = &data.sink {
                        if sink.send((entry.log_id.index, events)).is_err() {
                            tracing::warn!(
                                "event receiver is gone; events are no longer delivered"
                            );
                            data.sink = None;
                        }
                    }
                    responses.push(answers);
                }
                EntryPayload::Membership(m) => {
                    data.membership = StoredMembership::new(Some(entry.log_id), m);
                    responses.push(Vec::new());
                }
            }
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            handle: self.handle.clone(),
            file: Arc::clone(&self.file),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let state: ClusterState = codec::decode(&bytes).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                AnyError::error(e),
            ))
        })?;
        let stored = Stored {
            meta: meta.clone(),
            data: bytes,
        };
        let file = Arc::clone(&self.file);
        let stored = blocking(move || write_stored(&file.db, &stored).map(|_| stored))
            .await
            .map_err(snap_write_err)?;
        let mut data = self.handle.write_guard();
        data.state = state;
        data.last_applied = stored.meta.last_log_id;
        data.membership = stored.meta.last_membership;
        self.handle
            .commands_at_snapshot
            .store(self.handle.commands_applied(), Ordering::Relaxed);
        if data.sink.take().is_some() {
            tracing::warn!("state replaced by a snapshot; the event sink is closed, go live again");
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let file = Arc::clone(&self.file);
        let stored = blocking(move || read_stored(&file.db))
            .await
            .map_err(snap_read_err)?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod nested_read_tests {
    use super::*;

    fn handle(dir: &tempfile::TempDir, name: &str) -> (StateMachineStore, StateHandle) {
        let (sm, _closed) = StateMachineStore::open(&dir.path().join(name)).unwrap();
        let h = sm.handle();
        (sm, h)
    }

    /// A reader that reads the same state again would deadlock against a
    /// waiting apply (the cluster's randomized tests hung that way): in a
    /// debug build it fails at once, whatever else runs.
    #[cfg(debug_assertions)]
    #[test]
    fn a_nested_read_of_the_same_state_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (_sm, h) = handle(&dir, "sm.redb");
        let nested = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            h.read(|_| h.read(|s| s.title_regions.len()))
        }));
        let why = nested.unwrap_err();
        let why = why
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| why.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(why.contains("nested read"), "{why}");
        // The failed read left nothing behind: reads one after the other,
        // and a read of another member's state inside one, are fine.
        assert_eq!(h.read(|s| s.title_regions.len()), 0);
        let (_sm2, other) = handle(&dir, "other.redb");
        assert_eq!(h.read(|_| other.read(|s| s.fleets.len())), 0);
        assert_eq!(h.applied_index(), None);
    }
}
