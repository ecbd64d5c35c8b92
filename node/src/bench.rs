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

mod autoscale;
mod failover;
mod records;
mod scale;
mod soak;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use respawn::simulated_agent::{SimAgent, SimAgentOptions, SimEvent, SimObserver};
use respawn::ServerNode;
use respawn_config::{Config, DEV_FLEET, DEV_TITLE_REGION};
use respawn_net::Identity;
use respawn_types::ticket::server::sign_ticket;
use respawn_types::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Subcommand, Clone)]
pub enum BenchCmd {
    /// Concurrent placements against a single node with simulated DS processes.
    Placement(PlacementArgs),
    /// Placements without end while simulated agents cycle simple-mode
    /// processes, under a short retention window: RSS, record counts, log
    /// and snapshot sizes every 10 s, one JSON line at the end.
    Soak(soak::SoakArgs),
    /// Bytes per live record of the replicated state, by kind.
    Records(records::RecordsArgs),
    /// A 3-node cluster of server processes holding many live DS processes
    /// (registered by a simulated agent), then placements: latency and
    /// RSS per node.
    Scale(scale::ScaleArgs),
    /// The same load against a 3-node cluster (real QUIC between the nodes),
    /// then repeated leader stops timing the first placement fulfilled by the
    /// new leader; with --crash, server processes killed with SIGKILL.
    Cluster(ClusterArgs),
    /// A burst of placements larger than an autoscaled fleet's buffer
    /// (simulated agent with a launch delay): time until the buffer is
    /// restored and placement p99, beside a fixed-size fleet.
    Autoscale(autoscale::AutoscaleArgs),
}

#[derive(Args, Clone)]
pub struct ClusterArgs {
    /// Placements to run in the throughput phase.
    #[arg(long, default_value_t = 2000)]
    pub placements: usize,
    /// Backends placing at once (spread over the three nodes).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Leader kills to time (with --crash: of each kind).
    #[arg(long, default_value_t = 7)]
    pub trials: usize,
    /// Kill server processes with SIGKILL instead of stopping nodes in
    /// this process (`bench/failover.rs`).
    #[arg(long)]
    pub crash: bool,
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
        BenchCmd::Cluster(a) if a.crash => failover::crash(a).await,
        BenchCmd::Cluster(a) => cluster(a).await,
        BenchCmd::Soak(a) => soak::soak(a).await,
        BenchCmd::Records(a) => records::records(a),
        BenchCmd::Autoscale(a) => autoscale::autoscale(a).await,
        BenchCmd::Scale(a) => scale::scale(a).await,
    }
}

pub(crate) type Started = Arc<Mutex<HashMap<BattleSessionId, Instant>>>;

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
    let region = free_region(&node)?;

    let started: Started = Arc::default();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let agent = sim_agent(
        &agent_id,
        vec![node.quic_addr],
        a.placements,
        started.clone(),
        done_tx,
    )
    .await?;

    let bases = vec![format!("http://{}", node.http_addr)];
    let (wall, mut latencies) = run_load(
        &bases,
        &region,
        &started,
        &mut done_rx,
        a.placements,
        a.concurrency,
    )
    .await?;
    let entries = node.consensus.log_stats();
    report(
        "single node",
        a.placements,
        a.concurrency,
        wall,
        &mut latencies,
    );
    println!("log store:         {entries:?}");
    let (rss, hwm) = soak::rss_mb();
    println!("RSS:               {rss:.0} MB now, {hwm:.0} MB peak");
    agent.stop();
    node.shutdown().await;
    if cleanup {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// The dev title region of `node`.
fn free_region(node: &ServerNode) -> anyhow::Result<TitleRegion> {
    node.title_regions()
        .into_iter()
        .find(|r| r.id.as_str() == DEV_TITLE_REGION)
        .context("dev title region missing")
}

/// Runs `placements` placements with `concurrency` backends spread over
/// `bases`; returns the wall time and each placement's latency.
async fn run_load(
    bases: &[String],
    region: &TitleRegion,
    started: &Started,
    done_rx: &mut tokio::sync::mpsc::UnboundedReceiver<Duration>,
    placements: usize,
    concurrency: usize,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (client, base, region, started, next) = (
            client.clone(),
            bases[w % bases.len()].clone(),
            region.clone(),
            started.clone(),
            next.clone(),
        );
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < placements {
                place_one(&client, &base, &region, &started).await?;
            }
            anyhow::Ok(())
        }));
    }
    let mut latencies = Vec::with_capacity(placements);
    // The longest time without a placement fulfilled, and when it ended
    // (since the start of the load): a stall shows up here.
    let (mut last_done, mut gap, mut gap_end) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    while latencies.len() < placements {
        match tokio::time::timeout(Duration::from_secs(60), done_rx.recv()).await {
            Ok(Some(d)) => {
                let now = t0.elapsed();
                if now - last_done > gap {
                    (gap, gap_end) = (now - last_done, now);
                }
                last_done = now;
                latencies.push(d)
            }
            _ => bail!(
                "placements stalled after {} of {}",
                latencies.len(),
                placements
            ),
        }
    }
    let wall = t0.elapsed();
    println!(
        "longest stall:     {:.0} ms without a placement fulfilled, until {:.2} s into the load",
        gap.as_secs_f64() * 1e3,
        gap_end.as_secs_f64()
    );
    for w in workers {
        w.await??;
    }
    Ok((wall, latencies))
}

fn report(
    what: &str,
    placements: usize,
    concurrency: usize,
    wall: Duration,
    latencies: &mut [Duration],
) {
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!("== {what}: {placements} placements, {concurrency} concurrent backends");
    println!("wall time:         {:.2} s", wall.as_secs_f64());
    println!(
        "throughput:        {:.0} placements/s",
        placements as f64 / wall.as_secs_f64()
    );
    println!("p50 to FULFILLED:  {:.2} ms", pct(0.50).as_secs_f64() * 1e3);
    println!("p99 to FULFILLED:  {:.2} ms", pct(0.99).as_secs_f64() * 1e3);
    println!("max to FULFILLED:  {:.2} ms", pct(1.0).as_secs_f64() * 1e3);
}

pub(crate) fn free_port(udp: bool) -> anyhow::Result<u16> {
    Ok(if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    })
}

/// The 3-node benchmark.
async fn cluster(a: ClusterArgs) -> anyhow::Result<()> {
    use respawn_config::{Bootstrap, MemberSpec};
    let root =
        std::env::current_dir()?.join(format!(".respawn-bench-cluster-{}", std::process::id()));
    let ca = respawn_net::Pki::generate_ca("bench CA")?;
    let ports: Vec<(u16, u16)> = (0..3)
        .map(|_| Ok((free_port(true)?, free_port(false)?)))
        .collect::<anyhow::Result<_>>()?;
    let members: Vec<MemberSpec> = (0..3)
        .map(|i| MemberSpec {
            node_id: i as u64 + 1,
            quic: format!("127.0.0.1:{}", ports[i].0),
            http: format!("127.0.0.1:{}", ports[i].1),
        })
        .collect();
    let mut cfgs = Vec::new();
    let mut ids = Vec::new();
    for (i, (quic, http)) in ports.iter().enumerate() {
        let mut cfg = Config::dev("/bin/false", vec![]);
        cfg.data_dir = root.join(format!("n{}", i + 1));
        cfg.log = "warn".into();
        cfg.server.node_id = i as u64 + 1;
        cfg.server.quic_addr = format!("127.0.0.1:{quic}").parse()?;
        cfg.server.http_addr = format!("127.0.0.1:{http}").parse()?;
        cfg.server.bootstrap = Bootstrap::Members;
        cfg.server.members = members.clone();
        cfg.title_regions[0].secret_id = Some("sid-bench".into());
        cfg.title_regions[0].secret_key = Some("bench-secret-key-0123456789abcdef".into());
        cfgs.push(cfg);
        ids.push(ca.issue(
            respawn_net::PeerKind::Node,
            &respawn_net::transport::node_name(i as u64 + 1),
            &[],
        )?);
    }
    let mut nodes: Vec<Option<ServerNode>> = Vec::new();
    for (cfg, id) in cfgs.iter().zip(&ids) {
        nodes.push(Some(ServerNode::start(cfg, id).await?));
    }
    let leader_of = |nodes: &[Option<ServerNode>]| {
        nodes
            .iter()
            .flatten()
            .find(|n| n.consensus.is_leader())
            .map(|n| n.consensus.node_id())
    };
    let t = Instant::now();
    let mut leader = None;
    while leader.is_none() {
        leader = leader_of(&nodes);
        if t.elapsed() > Duration::from_secs(30) {
            bail!("no leader");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let region = loop {
        if let Some(r) = nodes.iter().flatten().next().and_then(|n| {
            n.title_regions()
                .into_iter()
                .find(|r| r.id.as_str() == DEV_TITLE_REGION)
        }) {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let agent_identity = ca.issue(respawn_net::PeerKind::Agent, respawn_config::DEV_HOST, &[])?;

    // Throughput: backends on all three nodes, the agent on a follower.
    let follower = |nodes: &[Option<ServerNode>]| {
        nodes
            .iter()
            .flatten()
            .find(|n| !n.consensus.is_leader())
            .map(|n| n.quic_addr)
    };
    let started: Started = Arc::default();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let agent = sim_agent(
        &agent_identity,
        vec![follower(&nodes).context("follower")?],
        a.placements,
        started.clone(),
        done_tx,
    )
    .await?;
    let bases: Vec<String> = cfgs
        .iter()
        .map(|c| format!("http://{}", c.server.http_addr))
        .collect();
    let (wall, mut latencies) = run_load(
        &bases,
        &region,
        &started,
        &mut done_rx,
        a.placements,
        a.concurrency,
    )
    .await?;
    report(
        "3-node cluster",
        a.placements,
        a.concurrency,
        wall,
        &mut latencies,
    );
    agent.stop();

    // Failover: stop the leader, time the first placement fulfilled after,
    // and when each step on the way happened.
    let mut trials = Vec::new();
    for trial in 0..a.trials {
        let old = leader_of(&nodes).context("leader")?;
        let started: Started = Arc::default();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
        let agent = sim_agent(
            &agent_identity,
            vec![follower(&nodes).context("follower")?],
            50,
            started.clone(),
            done_tx,
        )
        .await?;
        let survivor = nodes
            .iter()
            .flatten()
            .find(|n| !n.consensus.is_leader())
            .map(|n| format!("http://{}", n.http_addr))
            .context("survivor")?;
        let idx = (old - 1) as usize;
        let killed = Instant::now();
        let watch = tokio::spawn(watch_failover(
            nodes
                .iter()
                .flatten()
                .filter(|n| n.consensus.node_id() != old)
                .map(|n| (n.consensus.clone(), n.links.clone()))
                .collect(),
            killed,
        ));
        if let Some(n) = nodes[idx].take() {
            n.shutdown().await;
        }
        let stopped = killed.elapsed();
        // The stopped node's ports are free at once: it restarts on them
        // below without waiting.
        let client = reqwest::Client::new();
        let mut attempts = 0u32;
        let (accepted, fulfilled) = loop {
            if killed.elapsed() > Duration::from_secs(60) {
                bail!("no placement fulfilled within 60 s of stopping the leader");
            }
            attempts += 1;
            // Keep trying until a placement is accepted; its activation arrives on done_rx.
            if place_one(&client, &survivor, &region, &started)
                .await
                .is_ok()
            {
                let accepted = killed.elapsed();
                if let Ok(Some(_)) =
                    tokio::time::timeout(Duration::from_secs(5), done_rx.recv()).await
                {
                    break (accepted, killed.elapsed());
                }
            } else {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let (leader, elected, actors) = watch.await?;
        let t = Trial {
            stopped,
            elected,
            actors,
            accepted,
            fulfilled,
        };
        println!(
            "trial {trial}: stopped leader {old}; new leader {}; {t}; {attempts} placement attempt(s)",
            leader.map_or("?".to_string(), |l| l.to_string()),
        );
        trials.push(t);
        agent.stop();
        nodes[idx] = Some(
            ServerNode::start(&cfgs[idx], &ids[idx])
                .await
                .context("restarting the stopped node on its ports")?,
        );
        // The next trial starts once every node has applied the same log.
        let t = Instant::now();
        let applied = |n: &ServerNode| n.consensus.metrics().borrow().last_applied.map(|l| l.index);
        while leader_of(&nodes).is_none()
            || nodes
                .iter()
                .flatten()
                .any(|n| n.consensus.leader().is_none())
            || nodes
                .iter()
                .flatten()
                .map(applied)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 1
        {
            if t.elapsed() > Duration::from_secs(30) {
                bail!("cluster did not settle after a restart");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if !trials.is_empty() {
        let median = |f: &dyn Fn(&Trial) -> Option<Duration>| {
            let mut v: Vec<Duration> = trials.iter().filter_map(f).collect();
            v.sort();
            v.get(v.len() / 2)
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
        };
        let mut total: Vec<Duration> = trials.iter().map(|t| t.fulfilled).collect();
        total.sort();
        println!(
            "leader stop → first placement FULFILLED: median {:.0} ms over {} trials (min {:.0}, max {:.0})",
            median(&|t| Some(t.fulfilled)),
            trials.len(),
            total[0].as_secs_f64() * 1e3,
            total[total.len() - 1].as_secs_f64() * 1e3
        );
        println!(
            "medians from the stop: shutdown returned {:.0} ms, new leader {:.0} ms, its actors running {:.0} ms, placement accepted {:.0} ms, FULFILLED {:.0} ms",
            median(&|t| Some(t.stopped)),
            median(&|t| t.elected),
            median(&|t| t.actors),
            median(&|t| Some(t.accepted)),
            median(&|t| Some(t.fulfilled)),
        );
    }
    for n in nodes.into_iter().flatten() {
        n.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

/// When each step of one failover happened, counted from the moment the
/// leader was told to stop.
struct Trial {
    /// `ServerNode::shutdown` returned (its ports are free).
    stopped: Duration,
    /// A surviving node became leader (its Raft metrics).
    elected: Option<Duration>,
    /// The new leader's actors were running (rebuilt from the state).
    actors: Option<Duration>,
    /// The first placement was accepted through a survivor's edge.
    accepted: Duration,
    /// That placement was FULFILLED (its activation committed).
    fulfilled: Duration,
}

impl std::fmt::Display for Trial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Option<Duration>| d.map_or("?".to_string(), |d| d.as_millis().to_string());
        write!(
            f,
            "shutdown returned {} ms, new leader {} ms, actors running {} ms, placement accepted {} ms, FULFILLED {} ms",
            self.stopped.as_millis(),
            ms(self.elected),
            ms(self.actors),
            self.accepted.as_millis(),
            self.fulfilled.as_millis()
        )
    }
}

/// Watches the surviving nodes (every millisecond) for the new leader and
/// for its actors; returns the new leader and both times since `from`.
async fn watch_failover(
    survivors: Vec<(
        respawn_consensus::Consensus,
        Arc<respawn::agent_links::AgentLinks>,
    )>,
    from: Instant,
) -> (Option<NodeId>, Option<Duration>, Option<Duration>) {
    let mut leader = None;
    let mut elected = None;
    while from.elapsed() < Duration::from_secs(60) {
        if leader.is_none() {
            if let Some((c, _)) = survivors.iter().find(|(c, _)| c.is_leader()) {
                leader = Some(c.node_id());
                elected = Some(from.elapsed());
            }
        }
        if let Some(l) = leader {
            if let Some((_, links)) = survivors.iter().find(|(c, _)| c.node_id() == l) {
                if links.actors_running() {
                    return (leader, elected, Some(from.elapsed()));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    (leader, elected, None)
}

/// A `POST` of `/dsm/...` on `base` with the title region's headers and a
/// fresh ServerTicket.
pub(crate) fn dsm_post(
    client: &reqwest::Client,
    base: &str,
    r: &TitleRegion,
    path: &str,
) -> reqwest::RequestBuilder {
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
}

pub(crate) async fn place_one(
    client: &reqwest::Client,
    base: &str,
    r: &TitleRegion,
    started: &Started,
) -> anyhow::Result<()> {
    let post =
        |path: &str, body: serde_json::Value| dsm_post(client, base, r, path).json(&body).send();
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

/// Starts the simulated agent on `server` with `processes` ready DS
/// processes; each activation it makes sends the placement's latency (from
/// `started`) to `done`.
pub(crate) async fn sim_agent(
    id: &Identity,
    servers: Vec<std::net::SocketAddr>,
    processes: usize,
    started: Started,
    done: tokio::sync::mpsc::UnboundedSender<Duration>,
) -> anyhow::Result<SimAgent> {
    let observer: SimObserver = Arc::new(move |event| {
        if let SimEvent::SessionActivated { battle_session, .. } = event {
            let t = started
                .lock()
                .ok()
                .and_then(|mut m| m.remove(&battle_session));
            if let Some(t) = t {
                let _ = done.send(t.elapsed());
            }
        }
    });
    Ok(SimAgent::start(SimAgentOptions {
        identity: id.clone(),
        fleet: FleetId::new_unchecked(DEV_FLEET),
        servers,
        processes,
        session: None,
        observer,
        vs_port: None,
        parallel: false,
        activate: true,
        launch_delay: Duration::ZERO,
    })
    .await?)
}
