//! Retention of the logs of ended DS processes and VS instances: a sweep
//! deletes the logs of those that ended more than
//! [`Retention::max_age`] ago, then, while all logs together take more
//! than [`Retention::max_total_bytes`], those of the ones that ended
//! longest ago. The logs of live processes and instances are never
//! deleted (rotation bounds them, [`crate::rotate`]).
//!
//! [`to_delete`] is the pure decision over [`LogUnit`]s; the scanners that
//! build the units live with their owners (the agent for DS logs,
//! [`crate::VsRuntime::sweep_logs`] for VS logs).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// How long and how much of ended logs is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Logs of what ended longer ago than this are deleted.
    pub max_age: Duration,
    /// Most bytes all logs (of this owner) together may take.
    pub max_total_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_total_bytes: 2 * 1024 * 1024 * 1024,
        }
    }
}

/// The logs of one process or instance: one or more files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogUnit {
    /// Its files (a directory is deleted with what is in it).
    pub paths: Vec<PathBuf>,
    /// It still runs: never deleted.
    pub live: bool,
    /// When its logs were last written (the newest modification time).
    pub last_write: SystemTime,
    /// Bytes its files take.
    pub bytes: u64,
}

/// Which units to delete at `now` (indexes into `units`).
pub fn to_delete(units: &[LogUnit], retention: &Retention, now: SystemTime) -> Vec<usize> {
    let age = |u: &LogUnit| now.duration_since(u.last_write).unwrap_or(Duration::ZERO);
    let mut doomed: Vec<usize> = (0..units.len())
        .filter(|&i| !units[i].live && age(&units[i]) > retention.max_age)
        .collect();
    let mut total: u64 = units
        .iter()
        .enumerate()
        .filter(|(i, _)| !doomed.contains(i))
        .map(|(_, u)| u.bytes)
        .sum();
    if total > retention.max_total_bytes {
        let mut ended: Vec<usize> = (0..units.len())
            .filter(|i| !units[*i].live && !doomed.contains(i))
            .collect();
        ended.sort_by_key(|&i| units[i].last_write);
        for i in ended {
            if total <= retention.max_total_bytes {
                break;
            }
            total -= units[i].bytes;
            doomed.push(i);
        }
    }
    doomed
}

/// Size and newest modification time of `path` (a file, or a directory
/// and everything under it).
pub fn measure(path: &Path) -> (u64, SystemTime) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return (0, SystemTime::UNIX_EPOCH);
    };
    let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    if !meta.is_dir() {
        return (meta.len(), mtime);
    }
    let mut bytes = 0;
    let mut newest = mtime;
    if let Ok(rd) = fs::read_dir(path) {
        for e in rd.flatten() {
            let (b, m) = measure(&e.path());
            bytes += b;
            newest = newest.max(m);
        }
    }
    (bytes, newest)
}

/// Deletes the units `to_delete` chose; returns the bytes freed.
pub fn delete(units: &[LogUnit], chosen: &[usize]) -> u64 {
    let mut freed = 0;
    for &i in chosen {
        for p in &units[i].paths {
            let r = if p.is_dir() {
                fs::remove_dir_all(p)
            } else {
                fs::remove_file(p)
            };
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(path = %p.display(), "cannot delete an old log: {e}"),
            }
        }
        freed += units[i].bytes;
    }
    freed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn unit(live: bool, days_ago: u64, bytes: u64, now: SystemTime) -> LogUnit {
        LogUnit {
            paths: vec![],
            live,
            last_write: now - DAY * days_ago as u32,
            bytes,
        }
    }

    #[test]
    fn old_ended_logs_go_live_ones_stay() {
        let now = SystemTime::now();
        let r = Retention {
            max_age: DAY * 7,
            max_total_bytes: u64::MAX,
        };
        let units = [
            unit(false, 8, 10, now), // ended, too old
            unit(false, 6, 10, now), // ended, recent
            unit(true, 30, 10, now), // live, however old
        ];
        assert_eq!(to_delete(&units, &r, now), vec![0]);
    }

    #[test]
    fn over_the_cap_the_oldest_ended_go_first_until_under_it() {
        let now = SystemTime::now();
        let r = Retention {
            max_age: DAY * 365,
            max_total_bytes: 250,
        };
        let units = [
            unit(false, 1, 100, now),
            unit(false, 3, 100, now),
            unit(true, 5, 100, now),
            unit(false, 2, 100, now),
        ];
        // 400 bytes: the ended ones oldest first (3 days, then 2 days)
        // until 200 <= 250; the live one is never chosen.
        assert_eq!(to_delete(&units, &r, now), vec![1, 3]);
        // Live logs alone over the cap: nothing else to delete.
        let live = [unit(true, 1, 1000, now)];
        assert!(to_delete(&live, &r, now).is_empty());
    }

    #[test]
    fn a_clock_step_back_deletes_nothing_by_age() {
        let now = SystemTime::now();
        let r = Retention {
            max_age: DAY,
            max_total_bytes: u64::MAX,
        };
        let future = LogUnit {
            paths: vec![],
            live: false,
            last_write: now + DAY,
            bytes: 1,
        };
        assert!(to_delete(&[future], &r, now).is_empty());
    }

    #[test]
    fn measure_and_delete_a_directory() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        fs::create_dir_all(a.join("sub")).unwrap();
        fs::write(a.join("x.log"), [0u8; 100]).unwrap();
        fs::write(a.join("sub").join("y.log"), [0u8; 50]).unwrap();
        let (bytes, _) = measure(&a);
        assert_eq!(bytes, 150);
        let units = [LogUnit {
            paths: vec![a.clone()],
            live: false,
            last_write: SystemTime::UNIX_EPOCH,
            bytes,
        }];
        assert_eq!(delete(&units, &[0]), 150);
        assert!(!a.exists());
    }
}
