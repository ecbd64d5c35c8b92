//! `respawn bench autoscale`: a burst of placements larger than the buffer
//! against one node whose simulated agent takes `--launch-delay-ms` to make
//! a new process ready; the time until the buffer is restored and the
//! placements' p99, beside the same burst on a fixed-size fleet (the fill
//! policy, every slot ready before the burst).

use super::{free_region, report, run_load, soak, Started};
use anyhow::bail;
use clap::Args;
use respawn::simulated_agent::{SimAgent, SimAgentOptions, SimEvent, SimObserver};
use respawn::ServerNode;
use respawn_config::{Config, DEV_FLEET};
use respawn_types::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Clone)]
pub struct AutoscaleArgs {
    /// Placements in the burst (all at once).
    #[arg(long, default_value_t = 40)]
    pub burst: usize,
    /// The autoscaled fleet's buffer of idle processes.
    #[arg(long, default_value_t = 8)]
    pub buffer: u32,
    /// Time a new simulated process takes to become ready.
    #[arg(long, default_value_t = 500)]
    pub launch_delay_ms: u64,
    /// The host's capacity (processes_per_host); the fixed fleet runs all of them.
    #[arg(long, default_value_t = 200)]
    pub capacity: u32,
}

pub async fn autoscale(a: AutoscaleArgs) -> anyhow::Result<()> {
    if a.burst == 0 || a.capacity as usize <= a.burst + a.buffer as usize {
        bail!("--burst must be positive and --capacity above burst + buffer");
    }
    for autoscaled in [false, true] {
        one(&a, autoscaled).await?;
    }
    let (rss, hwm) = soak::rss_mb();
    println!("RSS:               {rss:.0} MB now, {hwm:.0} MB peak");
    Ok(())
}

/// Idle READY processes of the dev fleet.
fn idle(node: &ServerNode) -> usize {
    node.consensus.read(|s| {
        s.placeable_processes(&FleetId::new_unchecked(DEV_FLEET))
            .filter(|p| p.sessions_current == 0)
            .count()
    })
}

async fn wait_idle(node: &ServerNode, n: usize, what: &str) -> anyhow::Result<()> {
    let end = Instant::now() + Duration::from_secs(120);
    while idle(node) < n {
        if Instant::now() > end {
            bail!(
                "{what}: {} idle processes after 120 s, wanted {n}",
                idle(node)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn one(a: &AutoscaleArgs, autoscaled: bool) -> anyhow::Result<()> {
    let dir = std::env::current_dir()?.join(format!(
        ".respawn-bench-autoscale-{}-{autoscaled}",
        std::process::id()
    ));
    let mut cfg = Config::dev("/bin/false", vec![]);
    cfg.data_dir = dir.clone();
    cfg.server.http_addr = "127.0.0.1:0".parse()?;
    cfg.server.quic_addr = "127.0.0.1:0".parse()?;
    cfg.log = "warn".into();
    for f in cfg.fleets.iter_mut().filter(|f| f.id == DEV_FLEET) {
        f.definition.processes_per_host = a.capacity;
        if autoscaled {
            f.definition.scaling.buffer = a.buffer;
            f.definition.scaling.scale_in_delay_secs = 600;
        }
    }
    let (node_id, agent_id) = respawn_net::ensure_dev_pki(&dir)?;
    let node = ServerNode::start(&cfg, &node_id).await?;
    let region = free_region(&node)?;
    let started: Started = Arc::default();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let s2 = started.clone();
    let observer: SimObserver = Arc::new(move |event| {
        if let SimEvent::SessionActivated { battle_session, .. } = event {
            let t = s2.lock().ok().and_then(|mut m| m.remove(&battle_session));
            if let Some(t) = t {
                let _ = done_tx.send(t.elapsed());
            }
        }
    });
    let agent = SimAgent::start(SimAgentOptions {
        identity: agent_id.clone(),
        fleet: FleetId::new_unchecked(DEV_FLEET),
        servers: vec![node.quic_addr],
        processes: a.capacity as usize,
        session: None,
        observer,
        vs_port: None,
        parallel: false,
        activate: true,
        launch_delay: Duration::from_millis(a.launch_delay_ms),
    })
    .await?;
    let before = if autoscaled {
        a.buffer as usize
    } else {
        a.capacity as usize
    };
    wait_idle(&node, before, "before the burst").await?;
    let bases = vec![format!("http://{}", node.http_addr)];
    let t0 = Instant::now();
    let (wall, mut latencies) =
        run_load(&bases, &region, &started, &mut done_rx, a.burst, a.burst).await?;
    let label = if autoscaled {
        format!("autoscaled fleet (buffer {})", a.buffer)
    } else {
        format!("fixed-size fleet ({} processes)", a.capacity)
    };
    report(&label, a.burst, a.burst, wall, &mut latencies);
    if autoscaled {
        wait_idle(&node, a.buffer as usize, "buffer restored").await?;
        println!(
            "buffer restored:   {:.2} s after the burst began (launch delay {} ms)",
            t0.elapsed().as_secs_f64(),
            a.launch_delay_ms
        );
    }
    agent.stop();
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
