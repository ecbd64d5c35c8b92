//! An open redb file that tells when it has been closed, compacted when
//! opened.
//!
//! Several tasks (the log writer thread, log readers, the state machine and
//! its snapshot builders) share one `Arc<DbFile>`; the file is closed when
//! the last of them drops it. Reopening the same directory in the same
//! process before that fails with `DatabaseAlreadyOpen`, so the
//! `Consensus` handle waits for [`Closed`] in `shutdown`.

use crate::error::ConsensusError;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

/// redb's page cache per file. Its default is 1 GiB, which a busy log
/// fills with pages it will not read again (entries are read back from
/// the in-memory tail or by followers close behind); the log and vote
/// need little.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// A redb database and a signal fired once it is closed.
pub(crate) struct DbFile {
    /// Declared before `_closed`: fields drop in declaration order, so the
    /// file is closed before the signal fires.
    pub(crate) db: redb::Database,
    _closed: watch::Sender<()>,
}

/// Resolves once the [`DbFile`] it was made with has been dropped.
#[derive(Clone)]
pub(crate) struct Closed(watch::Receiver<()>);

impl Closed {
    /// A new signal: it fires once the returned sender is dropped.
    pub(crate) fn channel() -> (watch::Sender<()>, Closed) {
        let (tx, rx) = watch::channel(());
        (tx, Closed(rx))
    }

    /// Waits until the file is closed.
    pub(crate) async fn wait(mut self) {
        // `changed` fails only once the sender is dropped; nothing is ever
        // sent, so it returns exactly when the DbFile is gone.
        while self.0.changed().await.is_ok() {}
    }
}

impl DbFile {
    /// Opens (or creates) the database at `path`.
    pub(crate) fn open(path: &Path) -> Result<(Arc<DbFile>, Closed), ConsensusError> {
        let mut db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| ConsensusError::Storage(format!("open {}: {e}", path.display())))?;
        // redb reuses freed pages but never gives space back to the file
        // system by itself; at start-up, while nothing else holds the file,
        // compaction does. Best effort: a failure only leaves the file as
        // large as it was.
        let before = file_len(path);
        match db.compact() {
            Ok(_) => {
                let after = file_len(path);
                if after < before {
                    tracing::info!(path = %path.display(), before, after, "compacted");
                }
            }
            Err(e) => tracing::warn!(path = %path.display(), "cannot compact: {e}"),
        }
        let (tx, rx) = watch::channel(());
        Ok((Arc::new(DbFile { db, _closed: tx }), Closed(rx)))
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
