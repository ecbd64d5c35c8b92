//! The `respawn` processes of the real-network test: three servers and
//! two agents, each in its own namespace of a [`Net`], with their
//! configuration files, logs and data directories under one directory.

use super::netns::Net;
use respawn_tests::respawn_bin;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const TOKEN: &str = "real-network-admin-token-0123456789";
pub const SERVERS: [&str; 3] = ["n1", "n2", "n3"];
pub const AGENTS: [&str; 2] = ["a1", "a2"];
/// Every host of the network, in address order (the client last).
pub const HOSTS: [&str; 6] = ["n1", "n2", "n3", "a1", "a2", "c"];
const QUIC_PORT: u16 = 7000;
const HTTP_PORT: u16 = 8080;

/// Host `h`'s index in [`HOSTS`] (its address).
pub fn host_index(h: &str) -> usize {
    HOSTS.iter().position(|x| *x == h).unwrap_or(HOSTS.len())
}

/// The HTTP edge of server `h`.
pub fn edge(h: &str) -> String {
    format!("http://{}:{HTTP_PORT}", Net::addr(host_index(h)))
}

/// The QUIC address of server `h`.
pub fn quic(h: &str) -> String {
    format!("{}:{QUIC_PORT}", Net::addr(host_index(h)))
}

pub struct Procs {
    dir: PathBuf,
    children: BTreeMap<&'static str, Child>,
}

impl Procs {
    /// Writes the PKI and the configuration of every process under `dir`.
    pub fn prepare(dir: &Path) -> anyhow::Result<Procs> {
        let pki = dir.join("pki");
        let run = |args: &[&str]| -> anyhow::Result<()> {
            let out = Command::new(respawn_bin()).args(args).output()?;
            anyhow::ensure!(out.status.success(), "respawn {args:?} failed");
            Ok(())
        };
        let pki_s = pki.to_str().unwrap_or_default();
        run(&["ctl", "pki", "init", "--dir", pki_s])?;
        for n in ["1", "2", "3"] {
            run(&["ctl", "pki", "issue", "--dir", pki_s, "--node", n])?;
        }
        for a in AGENTS {
            run(&["ctl", "pki", "issue", "--dir", pki_s, "--agent", a])?;
        }
        let members: Vec<String> = SERVERS
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "{{ node_id = {}, quic = \"{}\", http = \"{}:{HTTP_PORT}\" }}",
                    i + 1,
                    quic(s),
                    Net::addr(host_index(s))
                )
            })
            .collect();
        let common = format!(
            r#"
[[title_regions]]
id = "tr-n"
title_id = "title-n"
secret_id = "sid-n"
secret_key = "0123456789abcdef0123456789abcdef"
[[fleets]]
id = "fleet-n"
title_region = "tr-n"
launch_path = "{bin}"
args = ["sample-ds", "--session-secs", "2"]
processes_per_host = 4
placement_timeout_secs = 20
"#,
            bin = respawn_bin().display()
        );
        for (i, s) in SERVERS.iter().enumerate() {
            let cfg = format!(
                "[server]\nnode_id = {}\nquic_addr = \"{}\"\nhttp_addr = \"{}:{HTTP_PORT}\"\npki_dir = \"{}/node-{}\"\nadmin_token = \"{TOKEN}\"\nbootstrap = \"members\"\nmembers = [{}]\n{common}",
                i + 1,
                quic(s),
                Net::addr(host_index(s)),
                pki.display(),
                i + 1,
                members.join(", ")
            );
            std::fs::write(dir.join(format!("{s}.toml")), cfg)?;
        }
        for (k, a) in AGENTS.iter().enumerate() {
            // Agent k starts on server k and knows the others.
            let first = SERVERS[k];
            let others: Vec<String> = SERVERS
                .iter()
                .filter(|s| **s != first)
                .map(|s| format!("\"{}\"", quic(s)))
                .collect();
            let cfg = format!(
                "[agent]\nserver_addr = \"{}\"\nservers = [{}]\nfleet = \"fleet-n\"\nhost_id = \"{a}\"\npublic_ip = \"{}\"\npki_dir = \"{}/agent-{a}\"\n{common}",
                quic(first),
                others.join(", "),
                Net::addr(host_index(a)),
                pki.display(),
            );
            std::fs::write(dir.join(format!("{a}.toml")), cfg)?;
        }
        Ok(Procs {
            dir: dir.to_path_buf(),
            children: BTreeMap::new(),
        })
    }

    /// Starts (or starts again) process `name` in its namespace.
    pub fn start(&mut self, net: &Net, name: &'static str) -> anyhow::Result<()> {
        let role = if name.starts_with('n') {
            "server"
        } else {
            "agent"
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &net.ns(name)])
            .arg(respawn_bin())
            .arg(role)
            .arg("--config")
            .arg(self.dir.join(format!("{name}.toml")))
            .arg("--data-dir")
            .arg(self.dir.join(format!("data-{name}")))
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.children.insert(name, child);
        Ok(())
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// The lines of `name`'s log that contain `what`.
    pub fn log_lines(&self, name: &str, what: &str) -> Vec<String> {
        std::fs::read_to_string(self.log_path(name))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(what))
            .map(str::to_string)
            .collect()
    }

    fn signal(&self, name: &str, sig: nix::sys::signal::Signal) -> anyhow::Result<()> {
        let child = self
            .children
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("{name} is not running"))?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
        nix::sys::signal::kill(pid, sig)?;
        Ok(())
    }

    /// SIGKILL: the process dies without closing anything.
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        self.signal(name, nix::sys::signal::Signal::SIGKILL)?;
        if let Some(mut c) = self.children.remove(name) {
            c.wait()?;
        }
        Ok(())
    }

    /// SIGSTOP (`pause == true`) or SIGCONT.
    pub fn pause(&self, name: &str, pause: bool) -> anyhow::Result<()> {
        use nix::sys::signal::Signal;
        self.signal(
            name,
            if pause {
                Signal::SIGSTOP
            } else {
                Signal::SIGCONT
            },
        )
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in self.children.values_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
