//! Processes the agent did not spawn: the DS processes a forking parent
//! forks (forking mode). They are not the agent's children, so it cannot
//! wait for them; it knows them by pid and start time (`/proc/<pid>/stat`,
//! which tells a recycled pid apart), checks that they descend from the
//! process that vouches for them, polls for their exit and kills them.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::Duration;

/// How often [`Foreign::exited`] looks at `/proc`.
pub const POLL: Duration = Duration::from_millis(200);
/// How many generations up [`descends_from`] looks.
const MAX_DEPTH: usize = 16;

/// What `/proc/<pid>/stat` says of a live (not zombie) process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// Clock ticks after boot at which it started.
    pub start_time: u64,
}

/// Parses `/proc/<pid>/stat`; `None` for a zombie or garbage.
pub fn parse(stat: &str) -> Option<Stat> {
    // The command name may hold anything: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    if matches!(f.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    Some(Stat {
        ppid: f.get(1)?.parse().ok()?,
        start_time: f.get(19)?.parse().ok()?,
    })
}

/// The stat of a live process.
pub fn stat(pid: u32) -> Option<Stat> {
    parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Is `pid` a live descendant of `ancestor` (child, grandchild, …)?
pub fn descends_from(pid: u32, ancestor: u32) -> bool {
    let mut at = pid;
    for _ in 0..MAX_DEPTH {
        match stat(at) {
            Some(s) if s.ppid == ancestor => return true,
            Some(s) if s.ppid > 1 => at = s.ppid,
            _ => return false,
        }
    }
    false
}

/// A live process known by pid and start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Foreign {
    pub pid: u32,
    start_time: u64,
}

impl Foreign {
    /// The process `pid` as it runs now, if it does.
    pub fn adopt(pid: u32) -> Option<Foreign> {
        stat(pid).map(|s| Foreign {
            pid,
            start_time: s.start_time,
        })
    }

    /// Still the same live process?
    pub fn alive(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start_time == self.start_time)
    }

    /// SIGKILLs it, if it is still the same process.
    pub fn kill(&self) {
        if self.alive() {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        }
    }

    /// Returns once it has exited (or become a zombie).
    pub async fn exited(&self) {
        while self.alive() {
            tokio::time::sleep(POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_with_any_command_name() {
        let line = "42 (a (weird) name) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 0 0";
        assert_eq!(
            parse(line),
            Some(Stat {
                ppid: 7,
                start_time: 123456
            })
        );
        assert_eq!(
            parse("42 (x) Z 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456"),
            None
        );
        assert_eq!(parse("garbage"), None);
    }

    #[tokio::test]
    async fn a_grandchild_descends_from_us_and_its_exit_is_seen() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let grandchild: u32 = line.trim().parse().unwrap();
        assert!(descends_from(grandchild, me));
        assert!(descends_from(grandchild, child.id()));
        assert!(!descends_from(me, grandchild));
        let f = Foreign::adopt(grandchild).unwrap();
        assert!(f.alive());
        f.kill();
        tokio::time::timeout(Duration::from_secs(10), f.exited())
            .await
            .unwrap();
        child.wait().unwrap();
    }
}
