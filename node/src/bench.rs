//! `respawn bench …`: measured figures for docs/benchmarks.md.
//!
//! `respawn bench placement` starts a real server node in this process
//! (Raft log on disk with fsync, QUIC listener, HTTP edge) and a simulated
//! agent on a real QUIC link whose DS processes activate the moment they
//! are asked. A load of concurrent backends then runs
//! RequestBattleSessionID + StartBattleSessionPlacement over HTTP with
//! server tickets; the latency of a placement is from sending
//! StartBattleSessionPlacement to the commit of its activation (the moment
//! the placement is FULFILLED).

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use respawn::edge::auth::sign_ticket;
use respawn::ServerNode;
use respawn_config::{Config, DEV_FLEET, DEV_TITLE_REGION};
use respawn_net::{Endpoint, Identity};
use respawn_types::agent::*;
use respawn_types::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Subcommand, Clone)]
pub enum BenchCmd {
    /// Concurrent placements against a single node with simulated DS processes.
    Placement(PlacementArgs),
}

#[derive(Args, Clone)]
pub struct PlacementArgs {
    /// Placements to run.
    #[arg(long, default_value_t = 2000)]
    pub placements: usize,
    /// Backends placing at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Directory for the node's state (fsync'd); a fresh one is made and removed if unset.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

pub async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Placement(a) => placement(a).await,
    }
}

type Started = Arc<Mutex<HashMap<BattleSessionId, Instant>>>;

async fn placement(a: PlacementArgs) -> anyhow::Result<()> {
    if a.placements == 0 || a.concurrency == 0 {
        bail!("--placements and --concurrency must be positive");
    }
    let (dir, cleanup) = match &a.data_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::current_dir()?.join(format!(".respawn-bench-{}", std::process::id())),
            true,
        ),
    };
    let mut cfg = Config::dev("/bin/false", vec![]);
    cfg.data_dir = dir.clone();
    cfg.server.http_addr = "127.0.0.1:0".parse()?;
    cfg.server.quic_addr = "127.0.0.1:0".parse()?;
    cfg.log = "warn".into();
    let (node_id, agent_id) = respawn_net::ensure_dev_pki(&dir)?;
    let node = ServerNode::start(&cfg, &node_id).await?;
    let region = node
        .title_regions()
        .into_iter()
        .find(|r| r.id.as_str() == DEV_TITLE_REGION)
        .context("dev title region missing")?;

    let started: Started = Arc::default();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let agent = SimAgent::connect(
        &agent_id,
        node.quic_addr,
        a.placements,
        started.clone(),
        done_tx,
    )
    .await?;

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()?;
    let base = format!("http://{}", node.http_addr);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..a.concurrency {
        let (client, base, region, started, next) = (
            client.clone(),
            base.clone(),
            region.clone(),
            started.clone(),
            next.clone(),
        );
        let total = a.placements;
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                place_one(&client, &base, &region, &started).await?;
            }
            anyhow::Ok(())
        }));
    }
    let mut latencies = Vec::with_capacity(a.placements);
    while latencies.len() < a.placements {
        match tokio::time::timeout(Duration::from_secs(60), done_rx.recv()).await {
            Ok(Some(d)) => latencies.push(d),
            _ => bail!(
                "placements stalled after {} of {}",
                latencies.len(),
                a.placements
            ),
        }
    }
    let wall = t0.elapsed();
    for w in workers {
        w.await??;
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let entries = node.consensus.log_stats();
    println!("placements:        {}", a.placements);
    println!("concurrency:       {}", a.concurrency);
    println!("wall time:         {:.2} s", wall.as_secs_f64());
    println!(
        "throughput:        {:.0} placements/s",
        a.placements as f64 / wall.as_secs_f64()
    );
    println!("p50 to FULFILLED:  {:.2} ms", pct(0.50).as_secs_f64() * 1e3);
    println!("p99 to FULFILLED:  {:.2} ms", pct(0.99).as_secs_f64() * 1e3);
    println!("max to FULFILLED:  {:.2} ms", pct(1.0).as_secs_f64() * 1e3);
    println!("log store:         {entries:?}");
    agent.close();
    node.shutdown().await;
    if cleanup {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

async fn place_one(
    client: &reqwest::Client,
    base: &str,
    r: &TitleRegion,
    started: &Started,
) -> anyhow::Result<()> {
    let post = |path: &str, body: serde_json::Value| {
        let ts = now_millis() as i64 / 1000;
        client
            .post(format!("{base}{path}"))
            .header("TitleId", r.title_id.as_str())
            .header("TitleRegionId", r.id.as_str())
            .header("SecretId", r.secret_id.as_str())
            .header(
                "ServerTicket",
                sign_ticket(
                    &r.secret_key,
                    r.title_id.as_str(),
                    r.id.as_str(),
                    r.secret_id.as_str(),
                    ts,
                ),
            )
            .json(&body)
            .send()
    };
    let res = post("/dsm/request_battle_session_id", serde_json::json!({})).await?;
    if !res.status().is_success() {
        bail!(
            "request_battle_session_id: {} {}",
            res.status(),
            res.text().await?
        );
    }
    let v: serde_json::Value = res.json().await?;
    let bs = v["battle_session_id"]
        .as_str()
        .context("no battle_session_id")?
        .to_string();
    started
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .insert(BattleSessionId::new_unchecked(bs.clone()), Instant::now());
    let res = post(
        "/dsm/start_battle_session_placement",
        serde_json::json!({"fleet_id": DEV_FLEET, "battle_session_id": bs, "max_players": 4,
                           "players": [{"player_id": "p1"}, {"player_id": "p2"}]}),
    )
    .await?;
    if !res.status().is_success() {
        bail!(
            "start_battle_session_placement: {} {}",
            res.status(),
            res.text().await?
        );
    }
    Ok(())
}

/// A simulated agent: `processes` ready DS processes whose SDK activates a
/// session the moment OnStartBattleSession arrives.
struct SimAgent {
    link: respawn_net::Link,
}

impl SimAgent {
    async fn connect(
        id: &Identity,
        server: std::net::SocketAddr,
        processes: usize,
        started: Started,
        done: tokio::sync::mpsc::UnboundedSender<Duration>,
    ) -> anyhow::Result<SimAgent> {
        let endpoint = Endpoint::client(id)?;
        let link = endpoint.connect(server).await?;
        let host = HostId::parse(id.subject()?.name)?;
        let hello = AgentToServer::Hello(AgentHello {
            protocol_version: PROTOCOL_VERSION,
            host_id: host,
            fleet_id: FleetId::new_unchecked(DEV_FLEET),
            ip: "127.0.0.1".into(),
            live_processes: Vec::new(),
        });
        let timeout = Duration::from_secs(10);
        match link.request::<_, ServerReply>(&hello, timeout).await? {
            ServerReply::Welcome { .. } => {}
            other => bail!("hello refused: {other:?}"),
        }
        let serve_link = link.clone();
        tokio::spawn(respawn_net::serve_requests(
            link.clone(),
            move |cmd: ServerToAgent| {
                let link = serve_link.clone();
                let started = started.clone();
                let done = done.clone();
                async move {
                    if let ServerToAgent::StartBattleSession {
                        process_id,
                        session,
                    } = cmd
                    {
                        let bs = session.battle_session_id.clone();
                        tokio::spawn(async move {
                            let msg = AgentToServer::ActivateBattleSession {
                                process_id,
                                battle_session_id: bs.clone(),
                            };
                            if let Ok(ServerReply::Ok) = link
                                .request::<_, ServerReply>(&msg, Duration::from_secs(30))
                                .await
                            {
                                let t = started.lock().ok().and_then(|mut m| m.remove(&bs));
                                if let Some(t) = t {
                                    let _ = done.send(t.elapsed());
                                }
                            }
                        });
                    }
                    AgentReply::Ok
                }
            },
        ));
        // Register the pool of ready processes, many at a time.
        let mut set = tokio::task::JoinSet::new();
        for i in 0..processes {
            let link = link.clone();
            set.spawn(async move {
                let process_id = ProcessId::new_unchecked(format!("proc-sim-{i:06}"));
                let s = AgentToServer::ProcessStarted {
                    process_id: process_id.clone(),
                    pid: 1,
                };
                link.request::<_, ServerReply>(&s, timeout).await?;
                let r = AgentToServer::ProcessReady {
                    process_id,
                    port: 7000 + (i % 1000) as u16,
                    log_paths: vec![],
                };
                link.request::<_, ServerReply>(&r, timeout).await?;
                anyhow::Ok(())
            });
            if set.len() >= 256 {
                if let Some(r) = set.join_next().await {
                    r??;
                }
            }
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        Ok(SimAgent { link })
    }

    fn close(&self) {
        self.link.close("benchmark done");
    }
}
