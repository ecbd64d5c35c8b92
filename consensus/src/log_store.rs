//! The durable Raft log: openraft's `RaftLogStorage` on one redb file,
//! `<dir>/raft.redb`, with group commit.
//!
//! Every write (append, vote, truncate, purge, committed) goes, in order,
//! through one channel to a dedicated writer thread. The thread takes what
//! is queued, writes all of it in a single redb transaction, commits once
//! (with `Durability::Immediate`, i.e. fsync) and only then fires the
//! `LogFlushed` callbacks and acknowledgements of the whole batch.
//!
//! Note: openraft 0.9 waits for each append's flush before it issues the
//! next append, so at most one append is ever queued here; what shares an
//! fsync in practice is a committed-index update with the next append, and
//! concurrent proposals share one because `Consensus` packs them
//! into one log entry ([`crate::types::Batch`]). The writer batches anyway
//! so that a runtime that pipelines appends gets group commit for free.
//!
//! Appended entries are kept in memory (`pending`) until their transaction
//! has committed, so a reader sees them as soon as `append` returns.
//!
//! `save_committed` is not waited for: it is queued and rides along with
//! the next batch. A batch made only of committed-index updates is
//! committed without fsync (`Durability::None`); the next durable commit,
//! or the writer's exit, makes it durable. Losing it in a crash only means
//! that fewer entries are re-applied at start-up; the leader commits them
//! again.

use crate::codec;
use crate::db::{Closed, DbFile};
use crate::error::ConsensusError;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, RaftLogReader, StorageIOError};
use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::BTreeMap;
use std::fmt::{Debug, Display};
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::oneshot;

/// Log entries: index → encoded [`Entry`].
pub(crate) const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
/// Vote, committed log id and last purged log id, encoded.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
pub(crate) const KEY_LAST_PURGED: &str = "last_purged";

/// Upper bound of write operations folded into one transaction.
const MAX_BATCH_OPS: usize = 4096;

/// Counters of the log writer, to see group commit at work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStoreStats {
    /// redb transactions committed by the writer.
    pub commits: u64,
    /// Of those, the ones committed with fsync (`Durability::Immediate`).
    pub durable_commits: u64,
    /// Log entries handed to `append`.
    pub entries_appended: u64,
    /// Log entries written durably.
    pub entries_written: u64,
    /// Encoded bytes of the entries handed to `append` (what the log file
    /// grows by before a purge frees it).
    pub bytes_appended: u64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    durable_commits: AtomicU64,
    entries_appended: AtomicU64,
    entries_written: AtomicU64,
    bytes_appended: AtomicU64,
}

/// What the log looks like, kept in memory and changed in the order of the
/// writes queued to the writer.
struct Mem {
    /// Appended entries whose transaction has not committed yet.
    pending: BTreeMap<u64, Entry>,
    last_log_id: Option<LogId>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

/// State shared by the store, its readers and the writer thread.
struct LogShared {
    file: Arc<DbFile>,
    mem: Mutex<Mem>,
    counters: Arc<Counters>,
    #[cfg(test)]
    gate: Arc<test_gate::Gate>,
}

/// A view on the writer's counters that does not keep the file open.
#[derive(Clone)]
pub(crate) struct LogProbe {
    counters: Arc<Counters>,
    #[cfg(test)]
    pub(crate) gate: Arc<test_gate::Gate>,
}

impl LogProbe {
    /// The writer's counters.
    pub(crate) fn stats(&self) -> LogStoreStats {
        LogStoreStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            durable_commits: self.counters.durable_commits.load(Ordering::Relaxed),
            entries_appended: self.counters.entries_appended.load(Ordering::Relaxed),
            entries_written: self.counters.entries_written.load(Ordering::Relaxed),
            bytes_appended: self.counters.bytes_appended.load(Ordering::Relaxed),
        }
    }
}

type Ack = oneshot::Sender<Result<(), String>>;

enum WriteOp {
    Append {
        /// (index, log id, encoded entry)
        entries: Vec<(u64, LogId, Vec<u8>)>,
        callback: LogFlushed<TypeConfig>,
    },
    Vote {
        bytes: Vec<u8>,
        done: Ack,
    },
    Committed {
        bytes: Vec<u8>,
    },
    Truncate {
        since: u64,
        done: Ack,
    },
    Purge {
        upto: u64,
        bytes: Vec<u8>,
        done: Ack,
    },
}

/// The Raft log store (`RaftLogStorage`). Owned by openraft; dropping it
/// stops the writer thread once everything queued is written.
pub struct LogStore {
    shared: Arc<LogShared>,
    tx: mpsc::Sender<WriteOp>,
}

/// A reader of the log, handed to openraft's replication tasks.
#[derive(Clone)]
pub struct LogReader {
    shared: Arc<LogShared>,
}

fn read_err(e: impl Display) -> StorageError {
    StorageIOError::read_logs(AnyError::error(e)).into()
}

fn write_err(e: impl Display) -> StorageError {
    StorageIOError::write_logs(AnyError::error(e)).into()
}

fn vote_err(e: impl Display) -> StorageError {
    StorageIOError::write_vote(AnyError::error(e)).into()
}

/// `[lo, hi)` of a range of indexes; `hi == None` means unbounded.
fn index_bounds<RB: RangeBounds<u64>>(range: &RB) -> Option<(u64, Option<u64>)> {
    let lo = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let hi = match range.end_bound() {
        Bound::Included(e) => e.checked_add(1),
        Bound::Excluded(e) => Some(*e),
        Bound::Unbounded => None,
    };
    match hi {
        Some(hi) if hi <= lo => None,
        _ => Some((lo, hi)),
    }
}

impl LogStore {
    /// Opens (or creates) the log at `path` and starts its writer thread.
    /// The returned [`Closed`] resolves once the file is closed again.
    pub(crate) fn open(path: &Path) -> Result<(LogStore, Closed), ConsensusError> {
        let (file, closed) = DbFile::open(path)?;
        let mem = load(&file.db)?;
        let shared = Arc::new(LogShared {
            file,
            mem: Mutex::new(mem),
            counters: Arc::default(),
            #[cfg(test)]
            gate: Arc::default(),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer_loop(writer, rx))
            .map_err(|e| ConsensusError::Storage(format!("spawn log writer: {e}")))?;
        Ok((LogStore { shared, tx }, closed))
    }

    /// Counters (and, in tests, the writer gate) that outlive the store.
    pub(crate) fn probe(&self) -> LogProbe {
        LogProbe {
            counters: Arc::clone(&self.shared.counters),
            #[cfg(test)]
            gate: Arc::clone(&self.shared.gate),
        }
    }

    /// Queues an operation that is acknowledged once it is durable, and
    /// waits for that.
    async fn write_and_wait(
        &self,
        op: impl FnOnce(Ack) -> WriteOp,
        err: fn(String) -> StorageError,
    ) -> Result<(), StorageError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(op(done))
            .map_err(|_| err("log writer has stopped".into()))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(err(e)),
            Err(_) => Err(err("log writer has stopped".into())),
        }
    }
}

/// Reads vote, committed, last purged and last log id from the file,
/// creating the tables on first use.
fn load(db: &redb::Database) -> Result<Mem, ConsensusError> {
    let txn = db.begin_write().map_err(ConsensusError::storage)?;
    txn.open_table(LOGS).map_err(ConsensusError::storage)?;
    txn.open_table(META).map_err(ConsensusError::storage)?;
    txn.commit().map_err(ConsensusError::storage)?;

    let txn = db.begin_read().map_err(ConsensusError::storage)?;
    let meta = txn.open_table(META).map_err(ConsensusError::storage)?;
    let get = |key: &str| -> Result<Option<Vec<u8>>, ConsensusError> {
        Ok(meta
            .get(key)
            .map_err(ConsensusError::storage)?
            .map(|v| v.value().to_vec()))
    };
    let decode_opt = |bytes: Option<Vec<u8>>| -> Result<Option<LogId>, ConsensusError> {
        match bytes {
            Some(b) => codec::decode::<Option<LogId>>(&b).map_err(ConsensusError::storage),
            None => Ok(None),
        }
    };
    let vote = match get(KEY_VOTE)? {
        Some(b) => Some(codec::decode::<Vote>(&b).map_err(ConsensusError::storage)?),
        None => None,
    };
    let committed = decode_opt(get(KEY_COMMITTED)?)?;
    let last_purged = decode_opt(get(KEY_LAST_PURGED)?)?;
    let logs = txn.open_table(LOGS).map_err(ConsensusError::storage)?;
    let last_entry = match logs.last().map_err(ConsensusError::storage)? {
        Some((_, v)) => Some(codec::decode::<Entry>(v.value()).map_err(ConsensusError::storage)?),
        None => None,
    };
    let last_log_id = last_entry.map(|e| e.log_id).or(last_purged);
    Ok(Mem {
        pending: BTreeMap::new(),
        last_log_id,
        last_purged,
        vote,
        committed,
    })
}

impl LogShared {
    /// The in-memory view. A panic while it was held (there is no code
    /// that can panic under this lock besides allocation failure) leaves
    /// the map consistent, so a poisoned lock is used as is.
    fn mem(&self) -> MutexGuard<'_, Mem> {
        self.mem.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Entries in `range`: those already in redb, then the pending tail.
    fn read_range<RB: RangeBounds<u64>>(&self, range: RB) -> Result<Vec<Entry>, ConsensusError> {
        let Some((lo, hi)) = index_bounds(&range) else {
            return Ok(Vec::new());
        };
        let bounds = (
            Bound::Included(lo),
            hi.map_or(Bound::Unbounded, Bound::Excluded),
        );
        // Take the pending tail and open the read transaction under the
        // same lock: an entry leaves `pending` only after its transaction
        // committed, so every entry is in one of the two.
        let (mut tail, txn) = {
            let mem = self.mem();
            let tail: Vec<Entry> = mem.pending.range(bounds).map(|(_, e)| e.clone()).collect();
            let txn = self.file.db.begin_read().map_err(ConsensusError::storage)?;
            (tail, txn)
        };
        // Pending entries are the tail of the log: anything in redb at or
        // after the first of them is being rewritten and is superseded.
        let redb_hi = match (tail.first(), hi) {
            (Some(first), Some(hi)) => Some(first.log_id.index.min(hi)),
            (Some(first), None) => Some(first.log_id.index),
            (None, hi) => hi,
        };
        let mut out = Vec::new();
        if redb_hi.is_none_or(|h| h > lo) {
            let table = txn.open_table(LOGS).map_err(ConsensusError::storage)?;
            let redb_bounds = (
                Bound::Included(lo),
                redb_hi.map_or(Bound::Unbounded, Bound::Excluded),
            );
            for item in table
                .range::<u64>(redb_bounds)
                .map_err(ConsensusError::storage)?
            {
                let (_, v) = item.map_err(ConsensusError::storage)?;
                out.push(codec::decode::<Entry>(v.value()).map_err(ConsensusError::storage)?);
            }
        }
        out.append(&mut tail);
        Ok(out)
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.shared.read_range(range).map_err(read_err)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.shared.read_range(range).map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let mem = self.shared.mem();
        Ok(LogState {
            last_purged_log_id: mem.last_purged,
            last_log_id: mem.last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            shared: Arc::clone(&self.shared),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = codec::encode(vote).map_err(vote_err)?;
        self.write_and_wait(|done| WriteOp::Vote { bytes, done }, vote_err)
            .await?;
        self.shared.mem().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.shared.mem().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes = codec::encode(&committed).map_err(write_err)?;
        let mut mem = self.shared.mem();
        mem.committed = committed;
        // Sent under the lock so that the queue order is the order of the
        // in-memory changes.
        self.tx
            .send(WriteOp::Committed { bytes })
            .map_err(|_| write_err("log writer has stopped"))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.shared.mem().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut encoded = Vec::with_capacity(entries.len());
        let mut bytes_total = 0u64;
        for e in &entries {
            let bytes = codec::encode(e).map_err(write_err)?;
            bytes_total += bytes.len() as u64;
            encoded.push((e.log_id.index, e.log_id, bytes));
        }
        self.shared
            .counters
            .bytes_appended
            .fetch_add(bytes_total, Ordering::Relaxed);
        let mut mem = self.shared.mem();
        if let Some(last) = entries.last() {
            mem.last_log_id = Some(last.log_id);
        }
        self.shared
            .counters
            .entries_appended
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        for e in entries {
            mem.pending.insert(e.log_id.index, e);
        }
        self.tx
            .send(WriteOp::Append {
                entries: encoded,
                callback,
            })
            .map_err(|_| write_err("log writer has stopped"))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let since = log_id.index;
        {
            let mut mem = self.shared.mem();
            drop(mem.pending.split_off(&since));
            let prev = match since.checked_sub(1) {
                None => None,
                Some(p) => match mem.pending.get(&p) {
                    Some(e) => Some(e.log_id),
                    // Not pending: durable already (or purged).
                    None => self.shared_read_one(p).map_err(read_err)?,
                },
            };
            // `None < Some(_)`: with no entry before `since`, the last
            // purged id (if any) is the last log id.
            mem.last_log_id = prev.max(mem.last_purged);
        }
        self.write_and_wait(|done| WriteOp::Truncate { since, done }, write_err)
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = codec::encode(&Some(log_id)).map_err(write_err)?;
        {
            let mut mem = self.shared.mem();
            if mem.last_purged < Some(log_id) {
                mem.last_purged = Some(log_id);
            }
            mem.pending = mem.pending.split_off(&(log_id.index.saturating_add(1)));
            if mem.last_log_id < Some(log_id) {
                mem.last_log_id = Some(log_id);
            }
        }
        let upto = log_id.index;
        self.write_and_wait(|done| WriteOp::Purge { upto, bytes, done }, write_err)
            .await
    }
}

impl LogStore {
    /// Log id of the durable entry at `index`, read while the caller holds
    /// the in-memory lock (redb reads do not take it).
    fn shared_read_one(&self, index: u64) -> Result<Option<LogId>, ConsensusError> {
        let txn = self
            .shared
            .file
            .db
            .begin_read()
            .map_err(ConsensusError::storage)?;
        let table = txn.open_table(LOGS).map_err(ConsensusError::storage)?;
        match table.get(index).map_err(ConsensusError::storage)? {
            Some(v) => Ok(Some(
                codec::decode::<Entry>(v.value())
                    .map_err(ConsensusError::storage)?
                    .log_id,
            )),
            None => Ok(None),
        }
    }
}

/// The writer thread: batches everything queued into one transaction.
fn writer_loop(shared: Arc<LogShared>, rx: mpsc::Receiver<WriteOp>) {
    // After a failed commit nothing more is written: a later append would
    // leave a hole where the failed one should be.
    let mut failed: Option<String> = None;
    // A committed-only batch was committed without fsync since the last
    // durable commit.
    let mut unsynced = false;
    while let Ok(first) = rx.recv() {
        #[cfg(test)]
        shared.gate.wait_open();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_OPS {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let durable = batch
            .iter()
            .any(|op| !matches!(op, WriteOp::Committed { .. }));
        let started = std::time::Instant::now();
        let result = match &failed {
            Some(e) => Err(e.clone()),
            None => write_batch(&shared.file.db, &batch, durable).map_err(|e| e.to_string()),
        };
        crate::sm::log_slow(
            "log write",
            started.elapsed(),
            format_args!("{}", describe_batch(&batch)),
        );
        match &result {
            Ok(()) => {
                shared.counters.commits.fetch_add(1, Ordering::Relaxed);
                if durable {
                    shared
                        .counters
                        .durable_commits
                        .fetch_add(1, Ordering::Relaxed);
                }
                unsynced = !durable;
            }
            Err(e) => {
                if failed.is_none() {
                    tracing::error!(error = %e, "raft log write failed; the log accepts no more writes");
                }
                failed = Some(e.clone());
            }
        }
        complete(&shared, batch, &result);
    }
    if unsynced && failed.is_none() {
        if let Err(e) = write_batch(&shared.file.db, &[], true) {
            tracing::warn!(error = %e, "final sync of the raft log failed");
        }
    }
}

/// What a batch of the writer holds, for its timing log.
fn describe_batch(batch: &[WriteOp]) -> String {
    let (mut entries, mut bytes, mut purged) = (0usize, 0usize, None);
    for op in batch {
        match op {
            WriteOp::Append { entries: e, .. } => {
                entries += e.len();
                bytes += e.iter().map(|(_, _, b)| b.len()).sum::<usize>();
            }
            WriteOp::Purge { upto, .. } => purged = Some(*upto),
            _ => {}
        }
    }
    format!(
        "ops={} entries={entries} bytes={bytes} purge_upto={purged:?}",
        batch.len()
    )
}

fn write_batch(db: &redb::Database, batch: &[WriteOp], durable: bool) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })?;
    {
        let mut logs = txn.open_table(LOGS)?;
        let mut meta = txn.open_table(META)?;
        for op in batch {
            match op {
                WriteOp::Append { entries, .. } => {
                    for (index, _, bytes) in entries {
                        logs.insert(*index, bytes.as_slice())?;
                    }
                }
                WriteOp::Vote { bytes, .. } => {
                    meta.insert(KEY_VOTE, bytes.as_slice())?;
                }
                WriteOp::Committed { bytes } => {
                    meta.insert(KEY_COMMITTED, bytes.as_slice())?;
                }
                WriteOp::Truncate { since, .. } => {
                    logs.retain_in(*since.., |_, _| false)?;
                }
                WriteOp::Purge { upto, bytes, .. } => {
                    meta.insert(KEY_LAST_PURGED, bytes.as_slice())?;
                    logs.retain_in(..=*upto, |_, _| false)?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// Drops written entries from the pending tail, then answers every
/// operation of the batch.
fn complete(shared: &LogShared, batch: Vec<WriteOp>, result: &Result<(), String>) {
    if result.is_ok() {
        let mut mem = shared.mem();
        let mut written = 0u64;
        for op in &batch {
            if let WriteOp::Append { entries, .. } = op {
                for (index, log_id, _) in entries {
                    written += 1;
                    // A later truncate + append may have replaced it.
                    if mem.pending.get(index).map(|e| e.log_id) == Some(*log_id) {
                        mem.pending.remove(index);
                    }
                }
            }
        }
        shared
            .counters
            .entries_written
            .fetch_add(written, Ordering::Relaxed);
    }
    for op in batch {
        match op {
            WriteOp::Append { callback, .. } => {
                callback.log_io_completed(result.clone().map_err(std::io::Error::other));
            }
            WriteOp::Vote { done, .. }
            | WriteOp::Truncate { done, .. }
            | WriteOp::Purge { done, .. } => {
                // The waiter may have been cancelled; nothing to tell then.
                let _ = done.send(result.clone());
            }
            WriteOp::Committed { .. } => {}
        }
    }
}

/// A switch that holds the writer before its next batch, so that tests can
/// make appends pile up and see them committed together.
#[cfg(test)]
pub(crate) mod test_gate {
    use std::sync::{Condvar, Mutex, PoisonError};

    #[derive(Default)]
    pub(crate) struct Gate {
        closed: Mutex<bool>,
        cv: Condvar,
    }

    impl Gate {
        pub(crate) fn close(&self) {
            *self.closed.lock().unwrap_or_else(PoisonError::into_inner) = true;
        }

        pub(crate) fn open(&self) {
            *self.closed.lock().unwrap_or_else(PoisonError::into_inner) = false;
            self.cv.notify_all();
        }

        pub(crate) fn wait_open(&self) {
            let guard = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
            let _open = self
                .cv
                .wait_while(guard, |closed| *closed)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}
