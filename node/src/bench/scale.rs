//! `respawn bench scale`: a 3-node cluster (three `respawn server`
//! processes) holding many live DS processes registered by a simulated
//! agent, then the placement load of `bench placement`.
//!
//! Prints the placement latency and, per server process, its resident set
//! now and at its peak (`VmRSS`, `VmHWM` of `/proc/<pid>/status`), after
//! registration and after the load. Run it once with `--live-processes
//! 2000` and once with `--live-processes 100000` to compare the p99.

use super::failover::{settled, start_servers};
use super::{report, run_load, sim_agent, Started};
use anyhow::{bail, Context};
use clap::Args;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Clone)]
pub struct ScaleArgs {
    /// Ready DS processes the simulated agent registers before the load
    /// (at least --placements: each placement takes one).
    #[arg(long, default_value_t = 100_000)]
    pub live_processes: usize,
    /// Placements to run once they are registered.
    #[arg(long, default_value_t = 2000)]
    pub placements: usize,
    /// Backends placing at once (spread over the three nodes).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

/// `(VmRSS, VmHWM)` of a process in MB (0 when unreadable).
fn rss_of(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn print_rss(when: &str, pids: &[u32]) {
    let figures: Vec<String> = pids
        .iter()
        .enumerate()
        .map(|(i, pid)| {
            let (now, peak) = rss_of(*pid);
            format!("node {}: {now:.0} MB (peak {peak:.0} MB)", i + 1)
        })
        .collect();
    println!("RSS {when}: {}", figures.join(", "));
}

pub async fn scale(a: ScaleArgs) -> anyhow::Result<()> {
    if a.placements == 0 || a.concurrency == 0 || a.live_processes < a.placements {
        bail!("--placements and --concurrency must be positive, --live-processes at least --placements");
    }
    let root =
        std::env::current_dir()?.join(format!(".respawn-bench-scale-{}", std::process::id()));
    let result = run(&a, &root).await;
    let _ = std::fs::remove_dir_all(&root);
    result
}

async fn run(a: &ScaleArgs, root: &std::path::Path) -> anyhow::Result<()> {
    let (servers, region, ca, leader) = start_servers(root).await?;
    let pids: Vec<u32> = servers.children.iter().flatten().map(|c| c.id()).collect();
    print_rss("at start", &pids);
    let agent_identity = ca.issue(respawn_net::PeerKind::Agent, respawn_config::DEV_HOST, &[])?;
    let follower = (0..3)
        .find(|i| *i as u64 + 1 != leader)
        .context("follower")?;
    let started: Started = Arc::default();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let t = Instant::now();
    let agent = sim_agent(
        &agent_identity,
        vec![servers.quic[follower]],
        a.live_processes,
        started.clone(),
        done_tx,
    )
    .await?;
    println!(
        "{} processes registered in {:.1} s",
        a.live_processes,
        t.elapsed().as_secs_f64()
    );
    let client = reqwest::Client::new();
    settled(&client, &servers.http).await?;
    print_rss("after registration", &pids);
    let (wall, mut latencies) = run_load(
        &servers.http,
        &region,
        &started,
        &mut done_rx,
        a.placements,
        a.concurrency,
    )
    .await?;
    report(
        &format!("3-node cluster, {} live processes", a.live_processes),
        a.placements,
        a.concurrency,
        wall,
        &mut latencies,
    );
    print_rss("after the load", &pids);
    agent.stop();
    Ok(())
}
