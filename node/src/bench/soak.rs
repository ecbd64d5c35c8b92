//! `respawn bench soak`: placements run continuously against one node whose
//! simulated agent cycles simple-mode DS processes (each session ends after
//! `--session-ms`, its process exits and a fresh one replaces it), with a
//! short retention window, so that the state reaches a steady size. Every
//! `--report-secs` it prints RSS, live and total record counts, the Raft
//! log and snapshot file sizes and placements/s; at the end one JSON line.

use super::{free_region, place_one, Started};
use anyhow::{bail, Context};
use clap::Args;
use respawn::simulated_agent::{SimAgent, SimAgentOptions, SimEvent, SimObserver};
use respawn::ServerNode;
use respawn_config::{Config, DEV_FLEET};
use respawn_types::FleetId;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Args, Clone)]
pub struct SoakArgs {
    /// Placements to run (each fulfilled, its session ended, its process replaced).
    #[arg(long, default_value_t = 1_000_000)]
    pub placements: usize,
    /// `[retention] records_secs` and `issued_ids_secs` of the node.
    #[arg(long, default_value_t = 10)]
    pub retention_secs: u64,
    /// Placements in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Simulated DS processes kept running.
    #[arg(long, default_value_t = 128)]
    pub processes: usize,
    /// How long a battle session runs before its process exits (ms).
    #[arg(long, default_value_t = 20)]
    pub session_ms: u64,
    /// Seconds between two report lines.
    #[arg(long, default_value_t = 10)]
    pub report_secs: u64,
    /// Directory for the node's state; a fresh one is made and removed if unset.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// This process's resident set and its peak, in MB (from /proc/self/status).
pub(super) fn rss_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

/// Total size of the files under `dir` whose name contains `part`, in MB.
fn files_mb(dir: &Path, part: &str) -> f64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains(part))
            {
                total += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total as f64 / 1e6
}

pub async fn soak(a: SoakArgs) -> anyhow::Result<()> {
    if a.placements < 10 || a.concurrency == 0 || a.processes < a.concurrency {
        bail!("--placements must be at least 10, --processes at least --concurrency (> 0)");
    }
    let (dir, cleanup) = match &a.data_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::current_dir()?.join(format!(".respawn-soak-{}", std::process::id())),
            true,
        ),
    };
    let mut cfg = Config::dev("/bin/false", vec![]);
    cfg.data_dir = dir.clone();
    cfg.server.http_addr = "127.0.0.1:0".parse()?;
    cfg.server.quic_addr = "127.0.0.1:0".parse()?;
    cfg.log = "warn".into();
    cfg.retention.records_secs = a.retention_secs;
    cfg.retention.issued_ids_secs = a.retention_secs;
    cfg.retention.interval_ms = 1_000;
    cfg.validate()?;
    let (node_id, agent_id) = respawn_net::ensure_dev_pki(&dir)?;
    let node = ServerNode::start(&cfg, &node_id).await?;
    let region = free_region(&node)?;

    // One permit per placement in flight: taken to place, given back when
    // the placement's session is activated.
    let permits = Arc::new(tokio::sync::Semaphore::new(a.concurrency));
    let fulfilled = Arc::new(AtomicUsize::new(0));
    let decile = (a.placements / 10).max(1);
    let marks: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(vec![Instant::now()]));
    let started: Started = Arc::default();
    let observer: SimObserver = {
        let (permits, fulfilled, marks, started) = (
            permits.clone(),
            fulfilled.clone(),
            marks.clone(),
            started.clone(),
        );
        Arc::new(move |event| {
            if let SimEvent::SessionActivated { battle_session, .. } = event {
                if let Ok(mut m) = started.lock() {
                    m.remove(&battle_session);
                }
                permits.add_permits(1);
                let n = fulfilled.fetch_add(1, Ordering::Relaxed) + 1;
                if n % decile == 0 {
                    if let Ok(mut m) = marks.lock() {
                        m.push(Instant::now());
                    }
                }
            }
        })
    };
    let agent = SimAgent::start(SimAgentOptions {
        identity: agent_id.clone(),
        fleet: FleetId::new_unchecked(DEV_FLEET),
        servers: vec![node.quic_addr],
        processes: a.processes,
        session: Some(Duration::from_millis(a.session_ms)),
        observer,
        vs_port: None,
        parallel: false,
        activate: true,
        launch_delay: Duration::ZERO,
    })
    .await?;

    let base = format!("http://{}", node.http_addr);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()?;
    let issued = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..a.concurrency {
        let (client, base, region, started, permits, issued) = (
            client.clone(),
            base.clone(),
            region.clone(),
            started.clone(),
            permits.clone(),
            issued.clone(),
        );
        let total = a.placements;
        workers.push(tokio::spawn(async move {
            while issued.fetch_add(1, Ordering::Relaxed) < total {
                permits.acquire().await?.forget();
                if let Err(e) = place_one(&client, &base, &region, &started).await {
                    tracing::warn!(error = %e, "placement not started");
                    permits.add_permits(1);
                }
            }
            anyhow::Ok(())
        }));
    }

    println!(
        "== soak: {} placements, {} in flight, {} processes, sessions {} ms, retention {} s",
        a.placements, a.concurrency, a.processes, a.session_ms, a.retention_secs
    );
    println!("time_s  rss_mb  placements  per_s  live: placements sessions players processes issued  log_mb  snapshot_mb");
    let t0 = Instant::now();
    let mut rss_first = None;
    let mut rss_last = 0.0;
    let mut rss_max: f64 = 0.0;
    let mut last = (t0, 0usize);
    let mut stalled_since = Instant::now();
    loop {
        let done = fulfilled.load(Ordering::Relaxed);
        if done >= a.placements {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if last.0.elapsed() < Duration::from_secs(a.report_secs) {
            continue;
        }
        let done = fulfilled.load(Ordering::Relaxed);
        if done > last.1 {
            stalled_since = Instant::now();
        } else if stalled_since.elapsed() > Duration::from_secs(60) {
            bail!("placements stalled at {done}");
        }
        let (rss, _) = rss_mb();
        rss_first.get_or_insert(rss);
        rss_last = rss;
        rss_max = rss_max.max(rss);
        let live = node.consensus.read(|s| {
            (
                s.placements.len(),
                s.battle_sessions.len(),
                s.player_battle_sessions.len(),
                s.processes.len(),
                s.issued_session_ids.len(),
            )
        });
        let rate = (done - last.1) as f64 / last.0.elapsed().as_secs_f64();
        println!(
            "{:>6.0}  {:>6.1}  {:>10}  {:>5.0}  {:>16} {:>8} {:>7} {:>9} {:>6}  {:>6.1}  {:>11.1}",
            t0.elapsed().as_secs_f64(),
            rss,
            done,
            rate,
            live.0,
            live.1,
            live.2,
            live.3,
            live.4,
            files_mb(&dir, "raft"),
            files_mb(&dir, "snapshot"),
        );
        last = (Instant::now(), done);
    }
    let wall = t0.elapsed();
    for w in workers {
        w.await??;
    }
    let (rss, hwm) = rss_mb();
    let marks = marks
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let rate = |i: usize| {
        let (a, b) = (marks.get(i)?, marks.get(i + 1)?);
        Some(decile as f64 / b.duration_since(*a).as_secs_f64())
    };
    let first = rate(0).context("no first decile")?;
    let last_decile = rate(marks.len().saturating_sub(2)).context("no last decile")?;
    println!(
        "wall time: {:.1} s, {:.0} placements/s overall",
        wall.as_secs_f64(),
        a.placements as f64 / wall.as_secs_f64()
    );
    println!(
        "{}",
        serde_json::json!({
            "rss_first_mb": (rss_first.unwrap_or(rss) * 10.0).round() / 10.0,
            "rss_last_mb": (rss.max(rss_last) * 10.0).round() / 10.0,
            "rss_max_mb": (hwm.max(rss_max) * 10.0).round() / 10.0,
            "throughput_first_decile": first.round(),
            "throughput_last_decile": last_decile.round(),
            "placements": a.placements,
        })
    );
    agent.stop();
    node.shutdown().await;
    if cleanup {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
