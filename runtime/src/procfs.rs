//! Reading `/proc`: process trees, listening sockets, CPU and memory counters.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use crate::listener::Listener;

/// Does `/proc/<pid>` exist?
pub(crate) fn pid_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// `(ppid, utime + stime in clock ticks)` from `/proc/<pid>/stat`.
fn stat_fields(pid: i32) -> Option<(i32, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&s)
}

/// Parses a `/proc/<pid>/stat` line into `(ppid, utime + stime)`.
pub(crate) fn parse_stat(s: &str) -> Option<(i32, u64)> {
    // The command name is in parentheses and may contain anything: split after the
    // last `)`. The fields after it start with field 3 (state).
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// `root` and all its descendants that are alive, found by scanning every
/// `/proc/<pid>/stat` for parent ids.
pub(crate) fn descendants(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if let Some((ppid, _)) = stat_fields(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    if !pid_exists(root) {
        return out;
    }
    let mut stack = vec![root];
    let mut seen = HashSet::new();
    while let Some(p) = stack.pop() {
        if !seen.insert(p) {
            continue;
        }
        out.push(p);
        if let Some(c) = children.get(&p) {
            stack.extend(c.iter().copied());
        }
    }
    out
}

/// The socket inodes that `pid` has open.
fn socket_inodes(pid: i32, into: &mut HashSet<u64>) {
    let Ok(rd) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return;
    };
    for e in rd.flatten() {
        if let Ok(target) = fs::read_link(e.path()) {
            if let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
            {
                into.insert(inode);
            }
        }
    }
}

/// Parses the hex address of `/proc/net/tcp` (`0100007F:1F90`) or `tcp6`.
fn parse_addr(s: &str) -> Option<(IpAddr, u16)> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => {
            let n = u32::from_str_radix(ip, 16).ok()?;
            IpAddr::V4(Ipv4Addr::from(n.to_ne_bytes()))
        }
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                let n = u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16).ok()?;
                bytes[i * 4..i * 4 + 4].copy_from_slice(&n.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some((ip, port))
}

/// The listening sockets of a `/proc/net/tcp{,6}` table, with their inodes.
pub(crate) fn parse_tcp_table(table: &str) -> Vec<(Listener, u64)> {
    let mut out = Vec::new();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[3] != "0A" {
            continue;
        }
        let (Some((addr, port)), Ok(inode)) = (parse_addr(f[1]), f[9].parse::<u64>()) else {
            continue;
        };
        out.push((Listener { addr, port }, inode));
    }
    out
}

/// The TCP sockets that any of `pids` listens on. Each pid's own network namespace
/// is read once: the agent's own through `NETLINK_SOCK_DIAG` (only the
/// listening sockets, [`crate::sock_diag`]), another one (a container's) from
/// `/proc/<pid>/net/tcp{,6}` (every socket of that namespace), as is the
/// agent's own should netlink fail.
pub(crate) fn listeners(pids: &[i32]) -> Vec<Listener> {
    let mut inodes = HashSet::new();
    for &pid in pids {
        socket_inodes(pid, &mut inodes);
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut seen_ns = HashSet::new();
    let mut out = Vec::new();
    for &pid in pids {
        let ns = fs::read_link(format!("/proc/{pid}/ns/net"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| format!("pid-{pid}"));
        if !seen_ns.insert(ns.clone()) {
            continue;
        }
        let own =
            fs::read_link("/proc/self/ns/net").is_ok_and(|p| p.to_string_lossy() == ns.as_str());
        if own {
            match crate::sock_diag::tcp_listeners() {
                Ok(all) => {
                    for (l, inode) in all {
                        if inodes.contains(&inode) && !out.contains(&l) {
                            out.push(l);
                        }
                    }
                    continue;
                }
                Err(e) => tracing::debug!(error = %e, "sock_diag failed; reading /proc/net/tcp"),
            }
        }
        for table in ["tcp", "tcp6"] {
            if let Ok(t) = fs::read_to_string(format!("/proc/{pid}/net/{table}")) {
                for (l, inode) in parse_tcp_table(&t) {
                    if inodes.contains(&inode) && !out.contains(&l) {
                        out.push(l);
                    }
                }
            }
        }
    }
    out
}

/// Clock ticks per second (`_SC_CLK_TCK`).
fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&t| t > 0)
        .map(|t| t as u64)
        .unwrap_or(100)
}

/// Cumulative CPU time (user + system) of `pids`, in nanoseconds.
pub(crate) fn cpu_ns(pids: &[i32]) -> u64 {
    let ticks: u64 = pids
        .iter()
        .filter_map(|&p| stat_fields(p))
        .map(|(_, t)| t)
        .sum();
    ticks.saturating_mul(1_000_000_000) / clock_ticks()
}

/// Resident memory of `pids`, in bytes (from `/proc/<pid>/statm`).
pub(crate) fn rss_bytes(pids: &[i32]) -> u64 {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .filter(|&p| p > 0)
        .map(|p| p as u64)
        .unwrap_or(4096);
    pids.iter()
        .filter_map(|p| fs::read_to_string(format!("/proc/{p}/statm")).ok())
        .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * page)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_tables() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 16411 1 00000000b5b08660 100 0 0 10 0\n\
   1: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 16412 1 0 100 0 0 10 0\n\
   2: 0100007F:0051 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 16413 1 0 100 0 0 10 0\n";
        let l = parse_tcp_table(v4);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].0.to_string(), "0.0.0.0:8080");
        assert!(l[0].0.is_wildcard());
        assert_eq!(l[0].1, 16411);
        assert_eq!(l[1].0.to_string(), "127.0.0.1:80");
        assert!(l[1].0.is_loopback());

        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0 100 0 0 10 0\n\
   1: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 101 1 0 100 0 0 10 0\n\
   2: 0000000000000000FFFF00000100007F:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 102 1 0 100 0 0 10 0\n";
        let l = parse_tcp_table(v6);
        assert_eq!(l.len(), 3);
        assert!(l[0].0.is_wildcard());
        assert_eq!(l[1].0.to_string(), "[::1]:8081");
        assert!(l[1].0.is_loopback());
        assert!(l[2].0.is_loopback());
        assert!(!l[2].0.is_wildcard());
    }

    #[test]
    fn parses_stat_with_odd_names() {
        let s = "123 (we ird) name)) S 45 123 123 0 -1 4194304 100 0 0 0 7 3 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_stat(s), Some((45, 10)));
    }

    #[test]
    fn finds_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let me = std::process::id() as i32;
        let found = listeners(&[me]);
        assert!(
            found.iter().any(|x| x.port == port && x.is_loopback()),
            "{found:?} lacks 127.0.0.1:{port}"
        );
        assert!(descendants(me).contains(&me));
        assert!(cpu_ns(&[me]) > 0 || rss_bytes(&[me]) > 0);
    }
}
