//! No child outlives `respawn dev`: SIGKILL it, and neither its DS processes
//! nor the sample VS's Python process survive; started again on the same
//! data directory, it runs cleanly.

use super::*;
use std::collections::BTreeSet;

/// `(pid, start time)` of a live (not zombie) process, from /proc.
fn stat(pid: u32) -> Option<(u32, u64, String)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    if f.first() == Some(&"Z") {
        return None;
    }
    let ppid = f.get(1)?.parse().ok()?;
    let start = f.get(19)?.parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmd = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    Some((ppid, start, cmd))
}

/// Every live descendant of `root`: `(pid, start time, command line)`.
fn descendants(root: u32) -> BTreeSet<(u32, u64, String)> {
    let all: Vec<(u32, u32, u64, String)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| stat(pid).map(|(ppid, start, cmd)| (pid, ppid, start, cmd)))
        .collect();
    let mut found = BTreeSet::new();
    let mut parents = vec![root];
    while let Some(p) = parents.pop() {
        for (pid, ppid, start, cmd) in &all {
            if *ppid == p && found.insert((*pid, *start, cmd.clone())) {
                parents.push(*pid);
            }
        }
    }
    found
}

/// Still the same process: same pid, same start time, not a zombie.
fn still_runs(pid: u32, start: u64) -> bool {
    stat(pid).is_some_and(|(_, s, _)| s == start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_child_survives_a_sigkilled_dev_and_it_restarts_cleanly() -> anyhow::Result<()> {
    let _shared = super::ALONE.read().await;
    let dir = tempfile::tempdir()?;
    let mut dev = Dev::start(dir.path())?;
    dev.wait_ready().await?;
    let root = dev.child.id();
    // Two DS processes and the sample VS (Python) running under it.
    let children = wait_for("the DS processes and the sample VS", T, || async {
        let d = descendants(root);
        let ds = d.iter().filter(|(_, _, c)| c.contains("sample-ds")).count();
        let vs = d.iter().filter(|(_, _, c)| c.contains("python")).count();
        (ds >= 2 && vs >= 1).then_some(d)
    })
    .await?;

    dev.kill9();
    let left = wait_for("every child of the killed dev to be gone", T, || async {
        let alive: Vec<_> = children
            .iter()
            .filter(|(pid, start, _)| still_runs(*pid, *start))
            .collect();
        alive.is_empty().then_some(())
    })
    .await;
    let survivors: Vec<_> = children
        .iter()
        .filter(|(pid, start, _)| still_runs(*pid, *start))
        .cloned()
        .collect();
    assert!(left.is_ok(), "children outlived respawn dev: {survivors:?}");

    // Again on the same directory: ready, placements served, the VS answers.
    let dev = Dev::start(dir.path())?;
    dev.wait_ready().await?;
    fulfilled_placement(&dev.backend).await?;
    wait_for("the sample VS to answer", T, || async {
        let a = dev
            .backend
            .invoke("GET", "vs-sample/hello", &[], Vec::new())
            .await
            .ok()?;
        (a.status == 200).then_some(())
    })
    .await?;
    Ok(())
}
