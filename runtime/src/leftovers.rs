//! The children an agent spawned, on disk, so that the next agent on the same
//! data directory stops what a crashed one left running.
//!
//! `PR_SET_PDEATHSIG` already kills an agent's *direct* children when it
//! dies; what it misses are their descendants (a VS started through a shell
//! script, a DS that forks) and children whose death signal could not be
//! set. A [`Ledger`] is a directory with one file per child, named by its
//! pid and holding its start time (`/proc/<pid>/stat` field 22, clock ticks
//! since boot) and whether it leads its own process group. At start-up
//! [`Ledger::stop_leftovers`] judges each record ([`verdict`]):
//!
//! - the pid runs with the recorded start time: it is the child itself —
//!   SIGKILL it, and its process group if it led one;
//! - the pid runs with another start time: the pid was recycled by an
//!   unrelated process — leave it alone;
//! - the pid is gone but it led a process group: Linux does not hand out a
//!   pid still used as a process group id, so processes in that group are
//!   the child's descendants — SIGKILL them.
//!
//! Records of children that ended are removed when the ledger is pruned
//! (every [`PRUNE_EVERY`] records, and at start-up), which bounds the
//! directory by the number of live children plus that.
//!
//! cgroups, where writable, catch all descendants of VS instances anyway
//! (`cgroup.rs` kills what is left in a previous agent's groups); the ledger
//! is what works everywhere, DS processes included.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// Prune records of ended children after this many new records.
pub const PRUNE_EVERY: u64 = 256;

/// What a ledger file says about one child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub pid: u32,
    /// Clock ticks after boot at which it started.
    pub start_time: u64,
    /// It leads its own process group (pgid == pid).
    pub group_leader: bool,
}

/// What `/proc` says about a pid now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub start_time: u64,
    pub pgid: u32,
}

/// What to do about a record at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The child still runs: kill it (and its group when it led one).
    KillChild { group: bool },
    /// The child is gone but its process group may have members left.
    KillGroupMembers,
    /// Nothing of ours: the pid is gone, or it is another process now.
    NotOurs,
}

/// Judges one record against what `/proc` says of its pid now.
pub fn verdict(record: &Record, now: Option<ProcStat>) -> Verdict {
    match now {
        Some(stat) if stat.start_time == record.start_time => Verdict::KillChild {
            group: record.group_leader,
        },
        Some(_) => Verdict::NotOurs,
        None if record.group_leader => Verdict::KillGroupMembers,
        None => Verdict::NotOurs,
    }
}

/// Parses `/proc/<pid>/stat` into its start time and process group.
pub fn parse_stat(stat: &str) -> Option<ProcStat> {
    // Fields after the command name (which may hold anything, parentheses
    // included) start at field 3; pgid is field 5, starttime field 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // A zombie has ended: nothing to stop.
    if f.first() == Some(&"Z") {
        return None;
    }
    Some(ProcStat {
        pgid: f.get(2)?.parse().ok()?,
        start_time: f.get(19)?.parse().ok()?,
    })
}

fn read_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The ledger of one agent (or one VS runtime): a directory of records.
#[derive(Debug)]
pub struct Ledger {
    /// `None`: a ledger that records nothing (its directory could not be
    /// made).
    dir: Option<PathBuf>,
    recorded: AtomicU64,
}

/// A child's record in a [`Ledger`], removed when dropped (when its owner
/// has seen it exit, or drops it).
#[derive(Debug)]
pub struct Recorded {
    ledger: Arc<Ledger>,
    pid: u32,
}

impl Drop for Recorded {
    fn drop(&mut self) {
        self.ledger.forget(self.pid);
    }
}

impl Ledger {
    /// Opens (creating it) the ledger in `dir`.
    pub fn open(dir: &Path) -> std::io::Result<Ledger> {
        fs::create_dir_all(dir)?;
        Ok(Ledger {
            dir: Some(dir.to_path_buf()),
            recorded: AtomicU64::new(0),
        })
    }

    /// A ledger that records nothing.
    pub fn disabled() -> Ledger {
        Ledger {
            dir: None,
            recorded: AtomicU64::new(0),
        }
    }

    /// Records the child `pid` (just spawned) until the returned guard is
    /// dropped. Best effort: a record that cannot be written is logged,
    /// and the child runs anyway.
    pub fn record(self: &Arc<Self>, pid: u32) -> Recorded {
        let recorded = Recorded {
            ledger: Arc::clone(self),
            pid,
        };
        let (Some(dir), Some(stat)) = (&self.dir, read_stat(pid)) else {
            return recorded; // Disabled, or already gone.
        };
        let text = format!("{} {}\n", stat.start_time, u8::from(stat.pgid == pid));
        if let Err(e) = fs::write(dir.join(pid.to_string()), text) {
            tracing::warn!(pid, dir = %dir.display(), "cannot record a child: {e}");
        }
        if self.recorded.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune();
        }
        recorded
    }

    /// The records in the directory (unreadable ones are removed).
    pub fn records(&self) -> Vec<Record> {
        let Some(Ok(rd)) = self.dir.as_ref().map(fs::read_dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let parsed = e.file_name().to_str().and_then(|name| {
                let pid: u32 = name.parse().ok()?;
                let text = fs::read_to_string(e.path()).ok()?;
                let mut f = text.split_whitespace();
                Some(Record {
                    pid,
                    start_time: f.next()?.parse().ok()?,
                    group_leader: f.next()? == "1",
                })
            });
            match parsed {
                Some(r) => out.push(r),
                None => {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        out
    }

    fn forget(&self, pid: u32) {
        if let Some(dir) = &self.dir {
            let _ = fs::remove_file(dir.join(pid.to_string()));
        }
    }

    /// Removes the records of children that have ended.
    pub fn prune(&self) {
        for r in self.records() {
            if read_stat(r.pid).is_none_or(|s| s.start_time != r.start_time) {
                self.forget(r.pid);
            }
        }
    }

    /// Stops what a previous agent left running (see the module
    /// documentation) and empties the ledger. Call it at start-up, before
    /// spawning anything. Returns how many processes were signalled.
    pub fn stop_leftovers(&self) -> usize {
        let mut signalled = 0;
        for r in self.records() {
            let pid = Pid::from_raw(r.pid as i32);
            match verdict(&r, read_stat(r.pid)) {
                Verdict::KillChild { group } => {
                    if group {
                        let _ = killpg(pid, Signal::SIGKILL);
                    }
                    if kill(pid, Signal::SIGKILL).is_ok() {
                        signalled += 1;
                    }
                    tracing::warn!(
                        pid = r.pid,
                        "stopped a process a previous agent left running"
                    );
                }
                Verdict::KillGroupMembers => {
                    let members = group_members(r.pid, r.start_time);
                    for m in &members {
                        if kill(Pid::from_raw(*m as i32), Signal::SIGKILL).is_ok() {
                            signalled += 1;
                        }
                    }
                    if !members.is_empty() {
                        tracing::warn!(
                            pgid = r.pid,
                            count = members.len(),
                            "stopped the descendants of a child a previous agent left"
                        );
                    }
                }
                Verdict::NotOurs => {}
            }
            self.forget(r.pid);
        }
        signalled
    }
}

/// Pids of live processes in process group `pgid` started no earlier than
/// its leader (`leader_start`).
fn group_members(pgid: u32, leader_start: u64) -> Vec<u32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            read_stat(*pid).is_some_and(|s| s.pgid == pgid && s.start_time >= leader_start)
        })
        .collect()
}

#[cfg(test)]
#[path = "leftovers_tests.rs"]
mod tests;
