//! The state machine: the [`ClusterState`] in memory, its snapshots in
//! `<dir>/snapshot.data` ([`crate::snapshot_store`]), and the gated event
//! stream.
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

use crate::db::Closed;
use crate::error::ConsensusError;
use crate::snapshot_store::{read_file, SnapshotFiles};
use crate::types::{
    BatchResponse, Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, StorageIOError};
use respawn_state::ClusterState;
use respawn_state::Event;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::io::AsyncWriteExt;

/// Where applied events go: `(log index, events of that entry)`.
pub type EventSink = tokio::sync::mpsc::UnboundedSender<(u64, Vec<Event>)>;

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
    #[track_caller]
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        let caller = std::panic::Location::caller();
        let guard = self.read_guard();
        let started = std::time::Instant::now();
        let r = f(&guard.state);
        drop(guard);
        let took = started.elapsed();
        if took >= SLOW_STEP {
            log_slow("state read", took, format_args!("by {caller}"));
        }
        r
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
    files: Arc<SnapshotFiles>,
    /// Files being received from the leader (at most one stream at a time;
    /// an abandoned one is removed when the next begins).
    receiving: Vec<PathBuf>,
}

/// Builds snapshots off the state machine task.
pub struct SnapshotBuilder {
    handle: StateHandle,
    files: Arc<SnapshotFiles>,
}

fn snap_read_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::read_snapshot(None, AnyError::error(e)).into()
}

fn snap_write_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_snapshot(None, AnyError::error(e)).into()
}

/// Above this, a step of apply, the log writer or a snapshot build is
/// logged at INFO (always at DEBUG): the steps that can hold placements up.
pub(crate) const SLOW_STEP: std::time::Duration = std::time::Duration::from_millis(100);

/// Logs how long `what` took: at DEBUG, or at INFO past [`SLOW_STEP`].
pub(crate) fn log_slow(what: &str, took: std::time::Duration, detail: std::fmt::Arguments<'_>) {
    let ms = took.as_millis() as u64;
    if took >= SLOW_STEP {
        tracing::info!(ms, "slow {what}: {detail}");
    } else {
        tracing::debug!(ms, "{what}: {detail}");
    }
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
    /// Opens (or creates) the snapshot file in `dir` and loads the latest
    /// snapshot from it, decoding it as a stream.
    pub(crate) fn open(dir: &Path) -> Result<(StateMachineStore, Closed), ConsensusError> {
        let (files, closed) = SnapshotFiles::open(dir)?;
        let data = match files.current() {
            Some(_) => {
                let (meta, state) = read_file(&files.path())?;
                SmData {
                    state,
                    last_applied: meta.last_log_id,
                    membership: meta.last_membership,
                    sink: None,
                }
            }
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
        let store = StateMachineStore {
            handle,
            files: Arc::new(files),
            receiving: Vec::new(),
        };
        Ok((store, closed))
    }

    /// The handle readers and the event owner use.
    pub fn handle(&self) -> StateHandle {
        self.handle.clone()
    }

    fn forget_received(&mut self) {
        for path in self.receiving.drain(..) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The current snapshot, its file opened for reading.
async fn open_current(files: &Arc<SnapshotFiles>) -> Result<Option<Snapshot>, ConsensusError> {
    let files = Arc::clone(files);
    let current = blocking(move || files.open_current()).await?;
    Ok(current.map(|(meta, file)| Snapshot {
        meta,
        snapshot: Box::new(tokio::fs::File::from_std(file)),
    }))
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
        let files = Arc::clone(&self.files);
        let (meta, bytes) = blocking(move || {
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
            let meta = SnapshotMeta {
                last_log_id: last_applied,
                last_membership: membership,
                snapshot_id,
            };
            // Streams the copy into the file; the copy is freed on return.
            let write_started = std::time::Instant::now();
            let (bytes, _) = files.write(&meta, &state)?;
            let write_ms = write_started.elapsed().as_millis() as u64;
            let drop_started = std::time::Instant::now();
            drop(state);
            let drop_ms = drop_started.elapsed().as_millis() as u64;
            tracing::info!(write_ms, drop_ms, "snapshot written");
            Ok((meta, bytes))
        })
        .await
        .map_err(snap_write_err)?;
        tracing::info!(snapshot = %meta, bytes, copy_ms, "snapshot built");
        // openraft keeps only the meta of a built snapshot; the data is
        // the file, opened for whoever reads it.
        let path = self.files.path();
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| snap_read_err(format!("open {}: {e}", path.display())))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
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
        let wait_started = std::time::Instant::now();
        let mut data = self.handle.write_guard();
        let lock_wait = wait_started.elapsed();
        let data = &mut *data;
        let mut responses = Vec::new();
        let mut commands = 0usize;
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
                    commands += batch.0.len();
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
        log_slow(
            "apply",
            wait_started.elapsed(),
            format_args!("commands={commands} lock_wait_ms={}", lock_wait.as_millis()),
        );
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            handle: self.handle.clone(),
            files: Arc::clone(&self.files),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        self.forget_received();
        let path = self.files.tmp_path("receive");
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| snap_write_err(format!("create {}: {e}", path.display())))?;
        self.receiving.push(path);
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let install_err = |e: ConsensusError| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                AnyError::error(e),
            ))
        };
        snapshot
            .flush()
            .await
            .map_err(|e| install_err(ConsensusError::storage(e)))?;
        let mut from = snapshot.into_std().await;
        let files = Arc::clone(&self.files);
        let wanted = meta.clone();
        let (state, _) = blocking(move || files.install(&wanted, &mut from))
            .await
            .map_err(install_err)?;
        self.forget_received();
        let mut data = self.handle.write_guard();
        data.state = state;
        data.last_applied = meta.last_log_id;
        data.membership = meta.last_membership.clone();
        self.handle
            .commands_at_snapshot
            .store(self.handle.commands_applied(), Ordering::Relaxed);
        if data.sink.take().is_some() {
            tracing::warn!("state replaced by a snapshot; the event sink is closed, go live again");
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        open_current(&self.files).await.map_err(snap_read_err)
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
