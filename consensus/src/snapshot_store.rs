//! The latest snapshot as one plain file, `<dir>/snapshot.data`, written
//! and read as a stream.
//!
//! Layout: the magic `RSNAPv1\n`, the length of the meta (u64, little
//! endian), the [`SnapshotMeta`] as JSON, then the [`ClusterState`] as JSON
//! up to the end of the file. Meta and state are in one file, replaced by a
//! rename, so they always belong together. The file is also what is sent
//! to a follower, chunk by chunk (openraft's snapshot data is this file).
//!
//! Nothing here holds the encoded state in memory: a snapshot is encoded
//! into a `BufWriter` on the file, decoded from a `BufReader`, and copied
//! file to file. Snapshots written by earlier versions inside
//! `snapshot.redb` (meta and state JSON as two values) are moved into the
//! file format when a node opens its directory; the state JSON is the
//! same.

use crate::db::Closed;
use crate::error::ConsensusError;
use crate::types::SnapshotMeta;
use respawn_state::ClusterState;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// First bytes of a snapshot file.
const MAGIC: &[u8; 8] = b"RSNAPv1\n";
/// Longest meta accepted when reading a header (the membership is small).
const MAX_META_LEN: u64 = 16 * 1024 * 1024;
/// Buffer of the encoder and decoder.
const IO_BUF: usize = 256 * 1024;
/// The file holding the latest snapshot.
pub const SNAPSHOT_DATA_FILE: &str = "snapshot.data";
/// Where earlier versions kept the snapshot (redb: `meta`, `data`).
pub const LEGACY_SNAPSHOT_FILE: &str = "snapshot.redb";
/// Suffix of files being written; left-overs are removed at open.
const TMP_SUFFIX: &str = ".tmp";

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> ConsensusError {
    ConsensusError::Storage(format!("{what} {}: {e}", path.display()))
}

/// The snapshot file of one member and the meta of what it holds.
pub(crate) struct SnapshotFiles {
    dir: PathBuf,
    /// Meta of the snapshot in the file; the lock also orders the renames
    /// of concurrent builds and installs.
    current: Mutex<Option<SnapshotMeta>>,
    /// Numbers the temporary files.
    tmp_seq: AtomicU64,
    /// Dropped with the last holder: tells `Consensus::shutdown` that no
    /// snapshot build or install still writes into the directory.
    _closed: tokio::sync::watch::Sender<()>,
}

impl SnapshotFiles {
    /// Opens the snapshot files of `dir`: removes left-over temporary
    /// files, moves a snapshot from `snapshot.redb` into `snapshot.data`
    /// if only the former exists, and reads the current meta.
    pub(crate) fn open(dir: &Path) -> Result<(SnapshotFiles, Closed), ConsensusError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err("create", dir, e))?;
        let entries = std::fs::read_dir(dir).map_err(|e| io_err("list", dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("snapshot.") && name.ends_with(TMP_SUFFIX) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let (closed_tx, closed) = Closed::channel();
        let files = SnapshotFiles {
            dir: dir.to_path_buf(),
            current: Mutex::new(None),
            tmp_seq: AtomicU64::new(0),
            _closed: closed_tx,
        };
        let legacy = dir.join(LEGACY_SNAPSHOT_FILE);
        if !files.path().exists() && legacy.exists() {
            files.migrate_legacy(&legacy)?;
        }
        let meta = match File::open(files.path()) {
            Ok(f) => Some(read_header(&mut BufReader::new(f), &files.path())?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("open", &files.path(), e)),
        };
        *files.lock() = meta;
        Ok((files, closed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SnapshotMeta>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Path of the current snapshot file.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(SNAPSHOT_DATA_FILE)
    }

    /// A fresh temporary path in the directory.
    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("snapshot.{what}.{n}{TMP_SUFFIX}"))
    }

    /// Meta of the current snapshot.
    pub(crate) fn current(&self) -> Option<SnapshotMeta> {
        self.lock().clone()
    }

    /// The current snapshot: its meta and the file opened for reading
    /// (under the lock, so they match).
    pub(crate) fn open_current(&self) -> Result<Option<(SnapshotMeta, File)>, ConsensusError> {
        let current = self.lock();
        match &*current {
            None => Ok(None),
            Some(meta) => {
                let path = self.path();
                let file = File::open(&path).map_err(|e| io_err("open", &path, e))?;
                Ok(Some((meta.clone(), file)))
            }
        }
    }

    /// Encodes `state` with `meta` into a temporary file and makes it the
    /// current snapshot unless a newer one is there already. Returns the
    /// file's size and whether it became current.
    pub(crate) fn write(
        &self,
        meta: &SnapshotMeta,
        state: &ClusterState,
    ) -> Result<(u64, bool), ConsensusError> {
        let tmp = self.tmp_path("build");
        let result = write_file(&tmp, meta, state).and_then(|len| {
            let current = self.commit(&tmp, meta)?;
            Ok((len, current))
        });
        let _ = std::fs::remove_file(&tmp);
        result
    }

    /// Copies a snapshot received from the leader from `from` (positioned
    /// anywhere) into a temporary file, decodes it, and makes it the
    /// current snapshot unless a newer one is there already. Returns the
    /// decoded state and whether it became current.
    pub(crate) fn install(
        &self,
        meta: &SnapshotMeta,
        from: &mut File,
    ) -> Result<(ClusterState, bool), ConsensusError> {
        use std::io::Seek;
        let tmp = self.tmp_path("install");
        let result = (|| {
            from.seek(std::io::SeekFrom::Start(0))
                .map_err(|e| io_err("seek", &tmp, e))?;
            {
                let out = File::create(&tmp).map_err(|e| io_err("create", &tmp, e))?;
                let mut out = BufWriter::with_capacity(IO_BUF, out);
                std::io::copy(&mut BufReader::with_capacity(IO_BUF, &*from), &mut out)
                    .map_err(|e| io_err("write", &tmp, e))?;
                let out = out.into_inner().map_err(|e| io_err("write", &tmp, e))?;
                out.sync_all().map_err(|e| io_err("sync", &tmp, e))?;
            }
            let (got, state) = read_file(&tmp)?;
            if got.snapshot_id != meta.snapshot_id || got.last_log_id != meta.last_log_id {
                return Err(ConsensusError::Storage(format!(
                    "received snapshot holds {got}, expected {meta}"
                )));
            }
            let current = self.commit(&tmp, meta)?;
            Ok((state, current))
        })();
        let _ = std::fs::remove_file(&tmp);
        result
    }

    /// Renames `tmp` over the current snapshot unless that one is newer.
    fn commit(&self, tmp: &Path, meta: &SnapshotMeta) -> Result<bool, ConsensusError> {
        let mut current = self.lock();
        if current
            .as_ref()
            .is_some_and(|c| c.last_log_id > meta.last_log_id)
        {
            return Ok(false);
        }
        let path = self.path();
        std::fs::rename(tmp, &path).map_err(|e| io_err("rename", &path, e))?;
        sync_dir(&self.dir)?;
        *current = Some(meta.clone());
        Ok(true)
    }

    /// Moves the snapshot kept in `snapshot.redb` by earlier versions into
    /// the file, then removes `snapshot.redb`.
    fn migrate_legacy(&self, legacy: &Path) -> Result<(), ConsensusError> {
        use redb::{ReadableDatabase, TableDefinition};
        const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
        let db = redb::Database::create(legacy).map_err(|e| io_err("open", legacy, e))?;
        let found = {
            let txn = db.begin_read().map_err(ConsensusError::storage)?;
            match txn.open_table(SNAPSHOT) {
                Ok(table) => {
                    let meta = table.get("meta").map_err(ConsensusError::storage)?;
                    let data = table.get("data").map_err(ConsensusError::storage)?;
                    match (meta, data) {
                        (Some(m), Some(d)) => {
                            let meta: SnapshotMeta =
                                crate::codec::decode(m.value()).map_err(ConsensusError::storage)?;
                            let tmp = self.tmp_path("migrate");
                            write_raw(&tmp, &meta, d.value())?;
                            self.commit(&tmp, &meta)?;
                            true
                        }
                        _ => false,
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => false,
                Err(e) => return Err(ConsensusError::storage(e)),
            }
        };
        drop(db);
        tracing::info!(from = %legacy.display(), moved = found, "snapshot moved to {SNAPSHOT_DATA_FILE}");
        std::fs::remove_file(legacy).map_err(|e| io_err("remove", legacy, e))?;
        Ok(())
    }
}

fn write_header(out: &mut impl Write, meta: &SnapshotMeta) -> std::io::Result<()> {
    let meta = serde_json::to_vec(meta)?;
    out.write_all(MAGIC)?;
    out.write_all(&(meta.len() as u64).to_le_bytes())?;
    out.write_all(&meta)
}

/// Writes a snapshot file, streaming the state through the encoder, and
/// syncs it. Returns its size.
fn write_file(
    path: &Path,
    meta: &SnapshotMeta,
    state: &ClusterState,
) -> Result<u64, ConsensusError> {
    let file = File::create(path).map_err(|e| io_err("create", path, e))?;
    let mut out = BufWriter::with_capacity(IO_BUF, file);
    write_header(&mut out, meta).map_err(|e| io_err("write", path, e))?;
    serde_json::to_writer(&mut out, state).map_err(|e| io_err("encode", path, e))?;
    finish(path, out)
}

/// Writes a snapshot file whose state is already encoded.
fn write_raw(path: &Path, meta: &SnapshotMeta, state_json: &[u8]) -> Result<u64, ConsensusError> {
    let file = File::create(path).map_err(|e| io_err("create", path, e))?;
    let mut out = BufWriter::with_capacity(IO_BUF, file);
    write_header(&mut out, meta).map_err(|e| io_err("write", path, e))?;
    out.write_all(state_json)
        .map_err(|e| io_err("write", path, e))?;
    finish(path, out)
}

fn finish(path: &Path, out: BufWriter<File>) -> Result<u64, ConsensusError> {
    let file = out.into_inner().map_err(|e| io_err("write", path, e))?;
    file.sync_all().map_err(|e| io_err("sync", path, e))?;
    let len = file.metadata().map_err(|e| io_err("stat", path, e))?.len();
    Ok(len)
}

/// Reads the magic and the meta.
fn read_header(input: &mut impl Read, path: &Path) -> Result<SnapshotMeta, ConsensusError> {
    let mut magic = [0u8; 8];
    input
        .read_exact(&mut magic)
        .map_err(|e| io_err("read", path, e))?;
    if &magic != MAGIC {
        return Err(io_err("read", path, "not a snapshot file (bad magic)"));
    }
    let mut len = [0u8; 8];
    input
        .read_exact(&mut len)
        .map_err(|e| io_err("read", path, e))?;
    let len = u64::from_le_bytes(len);
    if len > MAX_META_LEN {
        return Err(io_err("read", path, format!("meta of {len} bytes")));
    }
    let mut meta = Vec::new();
    input
        .take(len)
        .read_to_end(&mut meta)
        .map_err(|e| io_err("read", path, e))?;
    serde_json::from_slice(&meta).map_err(|e| io_err("decode meta of", path, e))
}

/// Reads a whole snapshot file, decoding the state as a stream.
pub(crate) fn read_file(path: &Path) -> Result<(SnapshotMeta, ClusterState), ConsensusError> {
    let file = File::open(path).map_err(|e| io_err("open", path, e))?;
    let mut input = BufReader::with_capacity(IO_BUF, file);
    let meta = read_header(&mut input, path)?;
    let state = serde_json::from_reader(input).map_err(|e| io_err("decode", path, e))?;
    Ok((meta, state))
}

fn sync_dir(dir: &Path) -> Result<(), ConsensusError> {
    // Makes the rename durable (directories can be opened for reading on
    // Unix; elsewhere this is best effort).
    match File::open(dir) {
        Ok(d) => {
            let _ = d.sync_all();
            Ok(())
        }
        Err(e) => Err(io_err("open", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::LogId;
    use respawn_state::Request;

    fn state() -> ClusterState {
        let mut s = ClusterState::default();
        for command in crate::tests::tagged_enum_commands() {
            let (response, _) = s.apply(&Request { at: 1, command });
            assert!(response.is_ok(), "{response:?}");
        }
        s
    }

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), index)),
            last_membership: Default::default(),
            snapshot_id: format!("snap-{index}"),
        }
    }

    #[test]
    fn a_written_snapshot_reads_back_and_an_older_one_does_not_replace_it() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _) = SnapshotFiles::open(dir.path()).unwrap();
        assert_eq!(files.current(), None);
        let s = state();
        assert!(files.write(&meta(7), &s).unwrap().1);
        assert!(!files.write(&meta(5), &ClusterState::default()).unwrap().1);
        let (m, back) = read_file(&files.path()).unwrap();
        assert_eq!((m, back), (meta(7), s.clone()));
        drop(files);
        // Reopened: same meta; no temporary file is left.
        let (files, _) = SnapshotFiles::open(dir.path()).unwrap();
        assert_eq!(files.current(), Some(meta(7)));
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![SNAPSHOT_DATA_FILE.to_string()]);
    }

    #[test]
    fn an_installed_snapshot_must_decode_and_match_its_meta() {
        let dir = tempfile::tempdir().unwrap();
        let (leader, _) = SnapshotFiles::open(&dir.path().join("a")).unwrap();
        let (follower, _) = SnapshotFiles::open(&dir.path().join("b")).unwrap();
        let s = state();
        leader.write(&meta(9), &s).unwrap();
        let (_, mut sent) = leader.open_current().unwrap().unwrap();
        let err = follower.install(&meta(8), &mut sent).unwrap_err();
        assert!(err.to_string().contains("expected"), "{err}");
        assert_eq!(follower.current(), None, "a mismatch installs nothing");
        let (got, current) = follower.install(&meta(9), &mut sent).unwrap();
        assert!(current);
        assert_eq!(got, s);
        assert_eq!(follower.current(), Some(meta(9)));
        // Garbage is refused and leaves the current snapshot in place.
        let junk = dir.path().join("junk");
        std::fs::write(&junk, b"not a snapshot").unwrap();
        let mut junk = File::open(&junk).unwrap();
        assert!(follower.install(&meta(10), &mut junk).is_err());
        assert_eq!(follower.current(), Some(meta(9)));
    }

    #[test]
    fn a_snapshot_kept_in_snapshot_redb_by_earlier_versions_is_moved_to_the_file() {
        use redb::TableDefinition;
        const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
        let dir = tempfile::tempdir().unwrap();
        let s = state();
        {
            let db = redb::Database::create(dir.path().join(LEGACY_SNAPSHOT_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(SNAPSHOT).unwrap();
                t.insert("meta", crate::codec::encode(&meta(4)).unwrap().as_slice())
                    .unwrap();
                t.insert("data", crate::codec::encode(&s).unwrap().as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let (files, _) = SnapshotFiles::open(dir.path()).unwrap();
        assert_eq!(files.current(), Some(meta(4)));
        assert_eq!(read_file(&files.path()).unwrap().1, s);
        assert!(!dir.path().join(LEGACY_SNAPSHOT_FILE).exists());
    }
}
