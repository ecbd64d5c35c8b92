//! DS log upload: when a DS process ends, the agent copies the files and
//! directories it named in ProcessReady's `log_paths` into its own log
//! directory (`<data_dir>/logs/<process_id>/collected/`), beside the
//! `stdout.log` and `stderr.log` it captured, and serves them to the
//! cluster (`ListDsLogs`, `ReadDsLog`) for the admin API. They stay on this
//! host, under the agent's log retention (`[agent.logs]`: age and total
//! size; the sweep of `log_sweep.rs`).
//!
//! Bounds: at most [`MAX_FILES`] files per process are collected, each cut
//! to its last [`MAX_FILE_BYTES`], all of them at most [`MAX_TOTAL_BYTES`];
//! directories are walked [`MAX_DEPTH`] levels deep. Paths inside the
//! process's own log directory are already kept and not copied again.

use respawn_types::agent::{DsLogFile, ErrorCode, WireError, MAX_LOG_CHUNK};
use respawn_types::ProcessId;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Most files collected per process.
pub const MAX_FILES: usize = 64;
/// Each collected file keeps at most its last 16 MiB.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// All collected files of one process: at most 64 MiB.
pub const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;
/// Levels of a named directory walked.
pub const MAX_DEPTH: usize = 4;
/// Most files one listing returns.
const MAX_LISTED: usize = 1024;

/// The name of the directory collected files go to, in a process's log dir.
pub const COLLECTED: &str = "collected";

/// The files named by `log_paths` (directories walked), in order, bounded.
fn named_files(log_paths: &[String], own_dir: &Path) -> Vec<PathBuf> {
    fn walk(p: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        if out.len() >= MAX_FILES {
            return;
        }
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            return;
        };
        if meta.is_file() {
            out.push(p.to_path_buf());
        } else if meta.is_dir() && depth < MAX_DEPTH {
            let Ok(rd) = std::fs::read_dir(p) else {
                return;
            };
            let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            entries.sort();
            for e in entries {
                walk(&e, depth + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    for lp in log_paths {
        let p = Path::new(lp);
        if p.starts_with(own_dir) {
            continue; // Kept already.
        }
        walk(p, 0, &mut out);
    }
    out.truncate(MAX_FILES);
    out
}

/// Copies the last `cap` bytes of `from` to `to`; returns the bytes copied.
fn copy_tail(from: &Path, to: &Path, cap: u64) -> std::io::Result<u64> {
    let mut f = std::fs::File::open(from)?;
    let len = f.metadata()?.len();
    if len > cap {
        f.seek(SeekFrom::Start(len - cap))?;
    }
    let mut out = std::fs::File::create(to)?;
    std::io::copy(&mut f.take(cap), &mut out)
}

/// Collects a process's `log_paths` into its log directory. Blocking; run
/// when the process has ended. Returns the files collected.
pub fn collect(log_dir: &Path, log_paths: &[String]) -> usize {
    let files = named_files(log_paths, log_dir);
    if files.is_empty() {
        return 0;
    }
    let dest = log_dir.join(COLLECTED);
    if let Err(e) = std::fs::create_dir_all(&dest) {
        tracing::warn!(dir = %dest.display(), "cannot collect DS logs: {e}");
        return 0;
    }
    let mut total = 0u64;
    let mut n = 0;
    for (i, f) in files.iter().enumerate() {
        let left = MAX_TOTAL_BYTES.saturating_sub(total);
        if left == 0 {
            break;
        }
        let base = f
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "log".into());
        let to = dest.join(format!("{i}-{base}"));
        match copy_tail(f, &to, left.min(MAX_FILE_BYTES)) {
            Ok(bytes) => {
                total += bytes;
                n += 1;
            }
            Err(e) => tracing::warn!(file = %f.display(), "cannot collect a DS log: {e}"),
        }
    }
    n
}

/// A relative file name inside a process's log directory, or an error.
fn inside(dir: &Path, name: &str) -> Result<PathBuf, WireError> {
    let rel = Path::new(name);
    let plain = !name.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(WireError::new(
            ErrorCode::BadRequest,
            format!("{name:?} is not a file name of the process's logs"),
        ));
    }
    Ok(dir.join(rel))
}

fn process_dir(logs_dir: &Path, id: &ProcessId) -> Result<PathBuf, WireError> {
    let dir = logs_dir.join(id.as_str());
    if !dir.is_dir() {
        return Err(WireError::new(
            ErrorCode::NotFound,
            format!("no logs of process {id} on this host (past the log retention?)"),
        ));
    }
    Ok(dir)
}

/// The log files kept for a process, by name. Blocking.
pub fn list(logs_dir: &Path, id: &ProcessId) -> Result<Vec<DsLogFile>, WireError> {
    fn walk(root: &Path, dir: &Path, depth: usize, out: &mut Vec<DsLogFile>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if out.len() >= MAX_LISTED {
                return;
            }
            let Ok(meta) = e.metadata() else { continue };
            let path = e.path();
            if meta.is_dir() && depth < MAX_DEPTH {
                walk(root, &path, depth + 1, out);
            } else if meta.is_file() {
                let Ok(rel) = path.strip_prefix(root) else {
                    continue;
                };
                out.push(DsLogFile {
                    name: rel.to_string_lossy().into_owned(),
                    size: meta.len(),
                    modified: meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_millis() as u64),
                });
            }
        }
    }
    let dir = process_dir(logs_dir, id)?;
    let mut out = Vec::new();
    walk(&dir, &dir, 0, &mut out);
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Up to `len` bytes of one log file from `offset`, and the file's size. Blocking.
pub fn read(
    logs_dir: &Path,
    id: &ProcessId,
    name: &str,
    offset: u64,
    len: u32,
) -> Result<(Vec<u8>, u64), WireError> {
    let path = inside(&process_dir(logs_dir, id)?, name)?;
    let io = |e: std::io::Error| {
        WireError::new(
            if e.kind() == std::io::ErrorKind::NotFound {
                ErrorCode::NotFound
            } else {
                ErrorCode::Internal
            },
            format!("{name}: {e}"),
        )
    };
    let mut f = std::fs::File::open(&path).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    if !f.metadata().map_err(io)?.is_file() {
        return Err(WireError::new(
            ErrorCode::NotFound,
            format!("{name} is not a file"),
        ));
    }
    f.seek(SeekFrom::Start(offset.min(size))).map_err(io)?;
    let mut data = Vec::new();
    f.take(u64::from(len.min(MAX_LOG_CHUNK)))
        .read_to_end(&mut data)
        .map_err(io)?;
    Ok((data, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_files_and_directories_are_collected_tail_first_and_bounded() {
        let d = tempfile::tempdir().unwrap();
        let own = d.path().join("own");
        let game = d.path().join("game");
        std::fs::create_dir_all(own.join(COLLECTED)).unwrap();
        std::fs::create_dir_all(game.join("sub")).unwrap();
        std::fs::write(game.join("a.log"), "alpha").unwrap();
        std::fs::write(game.join("sub/b.log"), "beta").unwrap();
        std::fs::write(own.join("mine.log"), "kept already").unwrap();
        let n = collect(
            &own,
            &[
                game.display().to_string(),
                own.join("mine.log").display().to_string(),
                "/nonexistent/x.log".into(),
            ],
        );
        assert_eq!(n, 2);
        assert_eq!(
            std::fs::read_to_string(own.join("collected/0-a.log")).unwrap(),
            "alpha"
        );
        assert_eq!(
            std::fs::read_to_string(own.join("collected/1-b.log")).unwrap(),
            "beta"
        );
        // A file over the cap keeps its tail.
        let big = d.path().join("big");
        std::fs::write(&big, "0123456789").unwrap();
        copy_tail(&big, &d.path().join("tail"), 4).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("tail")).unwrap(),
            "6789"
        );
    }

    #[test]
    fn names_cannot_leave_the_process_directory() {
        let dir = Path::new("/x/logs/proc-1");
        assert!(inside(dir, "stdout.log").is_ok());
        assert!(inside(dir, "collected/0-a.log").is_ok());
        for bad in [
            "",
            "../proc-2/stdout.log",
            "/etc/passwd",
            "collected/../../x",
        ] {
            assert!(inside(dir, bad).is_err(), "{bad}");
        }
    }
}
