//! Resource limits for process instances through cgroups (v2, else v1, else none).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::spec::Limits;

/// Where cgroup file systems are mounted.
pub(crate) const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The parent group under which every instance group is created.
const PARENT: &str = "respawn";

/// How this host limits processes.
#[derive(Debug, Clone)]
pub(crate) enum Mechanism {
    /// Unified hierarchy; `parent` is `/sys/fs/cgroup/respawn` with the memory (and,
    /// when available, cpu) controllers enabled for its children.
    V2 { parent: PathBuf, cpu: bool },
    /// Legacy hierarchies: `<root>/memory/respawn` and `<root>/cpu/respawn`.
    V1 { memory: PathBuf, cpu: PathBuf },
    /// Nothing usable; `why` says what failed.
    None { why: String },
}

/// Group names of one agent start with this (`<agent>_`).
pub(crate) fn group_prefix(agent_id: &str) -> String {
    let mut s: String = agent_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.push('_');
    s
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value)
}

impl Mechanism {
    /// Detects the mechanism under `root` (normally `/sys/fs/cgroup`), creating the
    /// `respawn` parent group(s).
    pub fn detect(root: &Path) -> Mechanism {
        if root.join("cgroup.controllers").exists() {
            return Self::detect_v2(root);
        }
        let (mem, cpu) = (root.join("memory"), root.join("cpu"));
        if mem.join("memory.limit_in_bytes").exists() && cpu.join("cpu.cfs_quota_us").exists() {
            let (pm, pc) = (mem.join(PARENT), cpu.join(PARENT));
            return match fs::create_dir_all(&pm).and_then(|_| fs::create_dir_all(&pc)) {
                Ok(()) => Mechanism::V1 {
                    memory: pm,
                    cpu: pc,
                },
                Err(e) => Mechanism::None {
                    why: format!("cgroup v1 hierarchies are not writable: {e}"),
                },
            };
        }
        Mechanism::None {
            why: format!(
                "neither cgroup v2 ({}/cgroup.controllers) nor the cgroup v1 memory and cpu hierarchies exist",
                root.display()
            ),
        }
    }

    fn detect_v2(root: &Path) -> Mechanism {
        let parent = root.join(PARENT);
        if let Err(e) = fs::create_dir_all(&parent) {
            return Mechanism::None {
                why: format!("cannot create {}: {e}", parent.display()),
            };
        }
        // Enable the controllers down to the parent's children; each may already be
        // enabled, or unavailable (then the write fails and we check below).
        for c in ["+memory", "+cpu"] {
            let _ = write(&root.join("cgroup.subtree_control"), c);
            let _ = write(&parent.join("cgroup.subtree_control"), c);
        }
        let enabled = fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
        let has = |c: &str| enabled.split_whitespace().any(|x| x == c);
        if !has("memory") {
            return Mechanism::None {
                why: format!(
                    "cannot enable the memory controller in {}/cgroup.subtree_control",
                    parent.display()
                ),
            };
        }
        Mechanism::V2 {
            parent,
            cpu: has("cpu"),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::V2 { .. } => "cgroup2",
            Mechanism::V1 { .. } => "cgroup1",
            Mechanism::None { .. } => "none",
        }
    }

    /// The parent directories instance groups live in.
    fn parents(&self) -> Vec<PathBuf> {
        match self {
            Mechanism::V2 { parent, .. } => vec![parent.clone()],
            Mechanism::V1 { memory, cpu } => vec![memory.clone(), cpu.clone()],
            Mechanism::None { .. } => vec![],
        }
    }

    /// Kills what is left in groups named with `prefix` (from a previous run of this
    /// agent) and removes those groups, best effort.
    pub fn clean_stale(&self, prefix: &str) {
        for parent in self.parents() {
            let Ok(rd) = fs::read_dir(&parent) else {
                continue;
            };
            for e in rd.flatten() {
                if !e.file_name().to_string_lossy().starts_with(prefix) || !e.path().is_dir() {
                    continue;
                }
                for pid in read_procs(&e.path()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                if fs::remove_dir(e.path()).is_ok() {
                    tracing::info!(group = %e.path().display(), "removed a stale cgroup");
                }
            }
        }
    }

    /// Creates (or reuses) the group `name` with the given limits. Returns the group,
    /// if one could be made, and how the limits are enforced.
    pub fn create(
        &self,
        name: &str,
        cpu_millicores: u32,
        memory_mb: u64,
    ) -> (Option<Group>, Limits) {
        let none = |why: String| {
            tracing::warn!("process limits are not enforced: {why}");
            (
                None,
                Limits {
                    mechanism: "none".into(),
                    enforced: false,
                },
            )
        };
        let mem_bytes = memory_mb.saturating_mul(1024 * 1024);
        match self {
            Mechanism::None { why } => none(why.clone()),
            Mechanism::V2 { parent, cpu } => {
                let dir = parent.join(name);
                if let Err(e) = fs::create_dir_all(&dir) {
                    return none(format!("cannot create {}: {e}", dir.display()));
                }
                let mut enforced = true;
                let mem = if memory_mb == 0 {
                    "max".to_string()
                } else {
                    mem_bytes.to_string()
                };
                if let Err(e) = write(&dir.join("memory.max"), &mem) {
                    tracing::warn!("cannot set memory.max in {}: {e}", dir.display());
                    enforced &= memory_mb == 0;
                }
                if memory_mb > 0 && dir.join("memory.swap.max").exists() {
                    let _ = write(&dir.join("memory.swap.max"), "0");
                }
                if *cpu {
                    let quota = if cpu_millicores == 0 {
                        "max".to_string()
                    } else {
                        (u64::from(cpu_millicores) * 100).max(1000).to_string()
                    };
                    if let Err(e) = write(&dir.join("cpu.max"), &format!("{quota} 100000")) {
                        tracing::warn!("cannot set cpu.max in {}: {e}", dir.display());
                        enforced &= cpu_millicores == 0;
                    }
                } else {
                    enforced &= cpu_millicores == 0;
                }
                (
                    Some(Group {
                        dirs: vec![dir.clone()],
                        memory: dir,
                        v2: true,
                    }),
                    Limits {
                        mechanism: "cgroup2".into(),
                        enforced,
                    },
                )
            }
            Mechanism::V1 { memory, cpu } => {
                let (md, cd) = (memory.join(name), cpu.join(name));
                if let Err(e) = fs::create_dir_all(&md).and_then(|_| fs::create_dir_all(&cd)) {
                    return none(format!("cannot create cgroup v1 group {name}: {e}"));
                }
                let mut enforced = true;
                // "-1" removes a limit left from an earlier use of the same group.
                let mem = if memory_mb == 0 {
                    "-1".to_string()
                } else {
                    mem_bytes.to_string()
                };
                if memory_mb > 0 && md.join("memory.memsw.limit_in_bytes").exists() {
                    // memsw must stay >= the memory limit: raise the memory limit first
                    // when lowering both, so write it before and after.
                    let _ = write(&md.join("memory.limit_in_bytes"), &mem);
                    let _ = write(&md.join("memory.memsw.limit_in_bytes"), &mem);
                }
                if let Err(e) = write(&md.join("memory.limit_in_bytes"), &mem) {
                    tracing::warn!("cannot set memory.limit_in_bytes in {}: {e}", md.display());
                    enforced &= memory_mb == 0;
                }
                let _ = write(&cd.join("cpu.cfs_period_us"), "100000");
                let quota = if cpu_millicores == 0 {
                    "-1".to_string()
                } else {
                    (i64::from(cpu_millicores) * 100).max(1000).to_string()
                };
                if let Err(e) = write(&cd.join("cpu.cfs_quota_us"), &quota) {
                    tracing::warn!("cannot set cpu.cfs_quota_us in {}: {e}", cd.display());
                    enforced &= cpu_millicores == 0;
                }
                (
                    Some(Group {
                        dirs: vec![md.clone(), cd],
                        memory: md,
                        v2: false,
                    }),
                    Limits {
                        mechanism: "cgroup1".into(),
                        enforced,
                    },
                )
            }
        }
    }
}

fn read_procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// One instance's cgroup (one directory per hierarchy).
#[derive(Debug)]
pub(crate) struct Group {
    dirs: Vec<PathBuf>,
    memory: PathBuf,
    v2: bool,
}

impl Group {
    /// Moves `pid` into the group (every hierarchy).
    pub fn add(&self, pid: i32) -> io::Result<()> {
        for d in &self.dirs {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The processes in the group.
    pub fn pids(&self) -> Vec<i32> {
        read_procs(&self.memory)
    }

    /// How many processes the kernel's OOM killer has killed in this group.
    /// `None` when the kernel does not say (then see [`Group::failcnt`]).
    pub fn oom_kills(&self) -> Option<u64> {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let s = fs::read_to_string(self.memory.join(file)).ok()?;
        s.lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(k, _)| *k == "oom_kill")
            .and_then(|(_, v)| v.trim().parse().ok())
    }

    /// How often the memory limit was hit (cgroup v1 `memory.failcnt`, v2 `max`
    /// events).
    pub fn failcnt(&self) -> Option<u64> {
        if self.v2 {
            let s = fs::read_to_string(self.memory.join("memory.events")).ok()?;
            return s
                .lines()
                .filter_map(|l| l.split_once(' '))
                .find(|(k, _)| *k == "max")
                .and_then(|(_, v)| v.trim().parse().ok());
        }
        fs::read_to_string(self.memory.join("memory.failcnt"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Memory charged to the group, in bytes.
    pub fn memory_bytes(&self) -> Option<u64> {
        let file = if self.v2 {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        };
        fs::read_to_string(self.memory.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Sends `sig` to every process in the group.
    pub fn signal_all(&self, sig: nix::sys::signal::Signal) {
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
    }

    /// Removes the group's directories, waiting up to ~2 s for its processes to go.
    pub async fn remove(&self) {
        for _ in 0..40 {
            let mut left = false;
            for d in &self.dirs {
                if d.exists() && fs::remove_dir(d).is_err() {
                    left = true;
                }
            }
            if !left {
                return;
            }
            self.signal_all(nix::sys::signal::Signal::SIGKILL);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tracing::warn!(dirs = ?self.dirs, "could not remove a cgroup");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_sanitized() {
        assert_eq!(group_prefix("node/1 a"), "node-1-a_");
    }

    #[test]
    fn detects_none_on_an_empty_root() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(Mechanism::detect(d.path()).name(), "none");
        let (g, l) = Mechanism::detect(d.path()).create("x", 100, 10);
        assert!(g.is_none());
        assert_eq!(
            l,
            Limits {
                mechanism: "none".into(),
                enforced: false
            }
        );
    }

    #[test]
    fn reads_v1_counters_from_files() {
        let d = tempfile::tempdir().unwrap();
        let g = Group {
            dirs: vec![d.path().to_path_buf()],
            memory: d.path().to_path_buf(),
            v2: false,
        };
        fs::write(
            d.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        fs::write(d.path().join("memory.failcnt"), "7\n").unwrap();
        fs::write(d.path().join("memory.usage_in_bytes"), "4096\n").unwrap();
        fs::write(d.path().join("cgroup.procs"), "12\n13\n").unwrap();
        assert_eq!(g.oom_kills(), Some(2));
        assert_eq!(g.failcnt(), Some(7));
        assert_eq!(g.memory_bytes(), Some(4096));
        assert_eq!(g.pids(), vec![12, 13]);
        let g2 = Group { v2: true, ..g };
        fs::write(
            d.path().join("memory.events"),
            "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(g2.oom_kills(), Some(1));
        assert_eq!(g2.failcnt(), Some(5));
    }
}
