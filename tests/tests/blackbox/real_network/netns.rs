//! A private network made of Linux network namespaces: one "switch"
//! namespace holding a bridge, and one namespace per host, each joined to
//! the bridge by a veth pair. Addresses are from 198.18.0.0/24 (the
//! benchmarking range), on interfaces that exist only inside these
//! namespaces; nothing is added to the namespace the test runs in. Every
//! namespace is deleted when the [`Net`] is dropped.

use anyhow::{bail, Context};
use std::process::Command;

/// Runs `ip args…`; fails with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The namespaces of one test run.
pub struct Net {
    prefix: String,
    hosts: Vec<String>,
}

impl Net {
    /// Whether namespaces can be made here (root, iproute2): makes and
    /// deletes one.
    pub fn available() -> bool {
        let name = format!("rsp-probe-{}", std::process::id());
        ip(&["netns", "add", &name]).is_ok() && ip(&["netns", "del", &name]).is_ok()
    }

    /// The switch and one namespace per host, host `k` (from 0) at
    /// 198.18.0.`10 + k`/24.
    pub fn new(hosts: &[&str]) -> anyhow::Result<Net> {
        let prefix = format!("rsp{}", std::process::id());
        let mut net = Net {
            prefix,
            hosts: Vec::new(),
        };
        let sw = net.switch();
        ip(&["netns", "add", &sw])?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for (k, h) in hosts.iter().enumerate() {
            let ns = format!("{}-{h}", net.prefix);
            ip(&["netns", "add", &ns])?;
            net.hosts.push(ns.clone());
            let port = net.port(h);
            // Made inside the host's namespace, its peer moved to the switch.
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port,
            ])?;
            ip(&["-n", &ns, "link", "set", &port, "netns", &sw])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &sw, "link", "set", &port, "up"])?;
            let addr = format!("{}/24", Net::addr(k));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn switch(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    /// The switch-side name of host `h`'s cable.
    fn port(&self, h: &str) -> String {
        format!("p-{h}")
    }

    /// The address of host `k`.
    pub fn addr(k: usize) -> String {
        format!("198.18.0.{}", 10 + k)
    }

    /// The namespace of host `h`.
    pub fn ns(&self, h: &str) -> String {
        format!("{}-{h}", self.prefix)
    }

    /// Unplugs (`up == false`) or plugs back host `h`'s cable at the
    /// switch: a partition at the network, the processes untouched.
    pub fn cable(&self, h: &str, up: bool) -> anyhow::Result<()> {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.switch(), "link", "set", &self.port(h), state])
    }

    /// Moves the calling thread into host `h`'s namespace: the sockets it
    /// (and the threads it starts) opens from then on are on that host.
    pub fn enter(&self, h: &str) -> anyhow::Result<()> {
        let file = std::fs::File::open(format!("/run/netns/{}", self.ns(h)))?;
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)?;
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain(std::iter::once(&self.switch())) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}
