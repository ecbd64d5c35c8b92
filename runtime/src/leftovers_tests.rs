#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::os::unix::process::{CommandExt, ExitStatusExt};

fn rec(start_time: u64, group_leader: bool) -> Record {
    Record {
        pid: 4242,
        start_time,
        group_leader,
    }
}

fn stat(start_time: u64) -> Option<ProcStat> {
    Some(ProcStat {
        start_time,
        pgid: 1,
    })
}

#[test]
fn verdicts() {
    // Same pid, same start time: our child.
    assert_eq!(
        verdict(&rec(100, false), stat(100)),
        Verdict::KillChild { group: false }
    );
    assert_eq!(
        verdict(&rec(100, true), stat(100)),
        Verdict::KillChild { group: true }
    );
    // Same pid, another start time: recycled, never touched.
    assert_eq!(verdict(&rec(100, true), stat(101)), Verdict::NotOurs);
    assert_eq!(verdict(&rec(100, false), stat(99)), Verdict::NotOurs);
    // Gone: its group's members, if it led one.
    assert_eq!(verdict(&rec(100, true), None), Verdict::KillGroupMembers);
    assert_eq!(verdict(&rec(100, false), None), Verdict::NotOurs);
}

#[test]
fn parses_stat_with_odd_command_names() {
    let line = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 987654 1000 10";
    assert_eq!(
        parse_stat(line),
        Some(ProcStat {
            start_time: 987654,
            pgid: 1234
        })
    );
    let zombie = "1234 (x) Z 1 1234 1234 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 987654 1000 10";
    assert_eq!(parse_stat(zombie), None);
    assert_eq!(parse_stat("garbage"), None);
}

/// A `sleep 600` leading its own process group.
fn sleeper() -> std::process::Child {
    std::process::Command::new("sleep")
        .arg("600")
        .process_group(0)
        .spawn()
        .unwrap()
}

#[test]
fn a_new_ledger_stops_what_the_old_one_recorded_and_spares_recycled_pids() {
    let d = tempfile::tempdir().unwrap();
    let old = Arc::new(Ledger::open(d.path()).unwrap());
    let mut left = sleeper();
    let left_record = old.record(left.id());
    // A record whose pid now runs another process (start time differs).
    let mut other = sleeper();
    let real = read_stat(other.id()).unwrap();
    fs::write(
        d.path().join(other.id().to_string()),
        format!("{} 1\n", real.start_time - 1),
    )
    .unwrap();
    // The old agent "crashes": its records stay on disk.
    std::mem::forget(left_record);
    drop(old);

    let new = Ledger::open(d.path()).unwrap();
    assert_eq!(new.records().len(), 2);
    assert_eq!(new.stop_leftovers(), 1);
    assert!(new.records().is_empty(), "the ledger is emptied");
    assert_eq!(left.wait().unwrap().signal(), Some(libc::SIGKILL));
    // The recycled pid was not touched: our SIGTERM is what ends it.
    kill(Pid::from_raw(other.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(other.wait().unwrap().signal(), Some(libc::SIGTERM));
}

#[test]
fn a_record_is_removed_when_its_guard_drops_and_pruned_when_its_child_ended() {
    let d = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::open(d.path()).unwrap());
    let mut a = sleeper();
    let guard = ledger.record(a.id());
    assert_eq!(ledger.records().len(), 1);
    drop(guard);
    assert!(ledger.records().is_empty());

    let mut b = sleeper();
    let kept = ledger.record(b.id());
    std::mem::forget(kept);
    b.kill().unwrap();
    b.wait().unwrap();
    ledger.prune();
    assert!(
        ledger.records().is_empty(),
        "an ended child's record is pruned"
    );
    a.kill().unwrap();
    a.wait().unwrap();
}
