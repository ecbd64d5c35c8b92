//! `respawn bench cluster --crash`: failover after a crash, not a planned
//! stop.
//!
//! Three `respawn server` processes (this binary, each with its own data
//! directory, Raft log fsync'd, QUIC between them) and a simulated agent in
//! this process, linked to one of them and knowing all three. Each trial
//! kills one server process with SIGKILL — no shutdown, no handover, its
//! links left to time out — then restarts it on the same ports and data
//! directory and waits for the cluster to settle. Trials alternate between
//! killing the leader and killing the node the agent is linked to:
//!
//! - **leader lost → first placement FULFILLED**: from the kill until the
//!   first placement sent through a survivor's edge (sent again until one
//!   is accepted) has its activation committed;
//! - **agent's node lost → agent relinked**: from the kill until the agent
//!   is registered again through another node (its Hello answered).
//!
//! Meanwhile a probe writes (RequestBattleSessionID, a committed command)
//! through the survivors every 20 ms; each probe's outcome and latency is
//! counted, so that writes sent during the election are seen to wait for
//! the new leader rather than fail.

use super::{dsm_post, free_port, place_one, sim_agent, ClusterArgs, Started};
use anyhow::{bail, Context};
use respawn_config::{Bootstrap, Config, MemberSpec, DEV_TITLE_REGION};
use respawn_types::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "bench-crash-admin-token-0123456789";
/// A trial that has not failed over within this is reported as failed.
const TRIAL_LIMIT: Duration = Duration::from_secs(60);

/// The server processes, killed when dropped.
pub(super) struct Servers {
    bin: PathBuf,
    configs: Vec<PathBuf>,
    pub(super) children: Vec<Option<Child>>,
    pub(super) http: Vec<String>,
    pub(super) quic: Vec<std::net::SocketAddr>,
}

impl Servers {
    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let child = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.configs[i])
            .arg("server")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting server {}", i + 1))?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// SIGKILL: the process ends without closing anything.
    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

#[derive(serde::Deserialize)]
struct Status {
    leader: Option<u64>,
    applied_index: Option<u64>,
}

async fn status(client: &reqwest::Client, base: &str) -> Option<Status> {
    client
        .get(format!("{base}/admin/cluster"))
        .bearer_auth(ADMIN_TOKEN)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Waits until every node answers with the same leader and the same
/// applied index; returns the leader (node id).
pub(super) async fn settled(client: &reqwest::Client, http: &[String]) -> anyhow::Result<u64> {
    let t = Instant::now();
    loop {
        let mut seen = Vec::new();
        for base in http {
            seen.push(status(client, base).await);
        }
        let leaders: std::collections::BTreeSet<_> = seen
            .iter()
            .map(|s| s.as_ref().and_then(|s| s.leader))
            .collect();
        let applied: std::collections::BTreeSet<_> = seen
            .iter()
            .map(|s| s.as_ref().and_then(|s| s.applied_index))
            .collect();
        if let (1, 1, Some(Some(l))) = (leaders.len(), applied.len(), leaders.first()) {
            return Ok(*l);
        }
        if t.elapsed() > TRIAL_LIMIT {
            bail!("the cluster did not settle within {TRIAL_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Outcomes of the probe writes.
#[derive(Default)]
struct Probes {
    ok: u64,
    failed: u64,
    /// Slowest successful probe.
    slowest_ok: Duration,
}

/// Writes through the survivors every 20 ms until `stop`.
async fn probe(
    bases: Vec<String>,
    region: TitleRegion,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Probes>>,
) {
    let client = reqwest::Client::new();
    let mut i = 0usize;
    let mut calls = tokio::task::JoinSet::new();
    while !stop.load(Ordering::Relaxed) {
        let base = bases[i % bases.len()].clone();
        i += 1;
        let (client, region, out) = (client.clone(), region.clone(), out.clone());
        calls.spawn(async move {
            let t = Instant::now();
            let ok = dsm_post(&client, &base, &region, "/dsm/request_battle_session_id")
                .json(&serde_json::json!({}))
                .timeout(Duration::from_secs(15))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            let mut p = out
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if ok {
                p.ok += 1;
                p.slowest_ok = p.slowest_ok.max(t.elapsed());
            } else {
                p.failed += 1;
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while calls.join_next().await.is_some() {}
}

fn percentile(v: &mut [Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)].as_secs_f64() * 1e3
}

/// The crash benchmark (see the module docs).
pub async fn crash(a: ClusterArgs) -> anyhow::Result<()> {
    let root =
        std::env::current_dir()?.join(format!(".respawn-bench-crash-{}", std::process::id()));
    let result = run(&a, &root).await;
    let _ = std::fs::remove_dir_all(&root);
    result
}

/// Three `respawn server` processes with default settings under `root`,
/// settled: the servers, the dev title region, the CA, the leader.
pub(super) async fn start_servers(
    root: &std::path::Path,
) -> anyhow::Result<(Servers, TitleRegion, respawn_net::CaBundle, u64)> {
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
    let mut servers = Servers {
        bin: std::env::current_exe()?,
        configs: Vec::new(),
        children: Vec::new(),
        http: Vec::new(),
        quic: Vec::new(),
    };
    let mut region = None;
    for (i, (quic, http)) in ports.iter().enumerate() {
        let id = i as u64 + 1;
        let pki = root.join(format!("pki/node-{id}"));
        ca.issue(
            respawn_net::PeerKind::Node,
            &respawn_net::transport::node_name(id),
            &[],
        )?
        .write_dir(&pki)?;
        // The defaults of a server, with the dev title region and fleet.
        let mut cfg = Config::dev("/bin/false", vec![]);
        cfg.data_dir = root.join(format!("n{id}"));
        cfg.log = "warn".into();
        cfg.server.node_id = id;
        cfg.server.quic_addr = format!("127.0.0.1:{quic}").parse()?;
        cfg.server.http_addr = format!("127.0.0.1:{http}").parse()?;
        cfg.server.bootstrap = Bootstrap::Members;
        cfg.server.members = members.clone();
        cfg.server.pki_dir = Some(pki);
        cfg.server.admin_token = Some(ADMIN_TOKEN.into());
        cfg.title_regions[0].secret_id = Some("sid-bench".into());
        cfg.title_regions[0].secret_key = Some("bench-secret-key-0123456789abcdef".into());
        let tr = &cfg.title_regions[0];
        region = Some(TitleRegion {
            id: TitleRegionId::new_unchecked(DEV_TITLE_REGION),
            title_id: TitleId::new_unchecked(tr.title_id.clone()),
            name: String::new(),
            title_name: String::new(),
            secret_id: SecretId::new_unchecked("sid-bench"),
            secret_key: "bench-secret-key-0123456789abcdef".into(),
        });
        let path = root.join(format!("n{id}.toml"));
        std::fs::create_dir_all(root)?;
        std::fs::write(&path, toml::to_string(&cfg)?)?;
        servers.configs.push(path);
        servers.children.push(None);
        servers
            .http
            .push(format!("http://{}", cfg.server.http_addr));
        servers.quic.push(cfg.server.quic_addr);
    }
    let region = region.context("no title region")?;
    for i in 0..3 {
        servers.spawn(i)?;
    }
    let client = reqwest::Client::new();
    let leader = settled(&client, &servers.http).await?;
    println!(
        "3 server processes up (heartbeat {} ms, election timeout {}–{} ms); leader {leader}",
        Config::default().server.heartbeat_ms,
        Config::default().server.election_timeout_ms,
        Config::default().server.election_timeout_max_ms(),
    );
    Ok((servers, region, ca, leader))
}

async fn run(a: &ClusterArgs, root: &std::path::Path) -> anyhow::Result<()> {
    let (mut servers, region, ca, leader) = start_servers(root).await?;
    let client = reqwest::Client::new();
    // The agent starts on a follower and knows every node.
    let agent_identity = ca.issue(respawn_net::PeerKind::Agent, respawn_config::DEV_HOST, &[])?;
    let first = (0..3)
        .find(|i| *i as u64 + 1 != leader)
        .context("follower")?;
    let order: Vec<_> = (0..3).map(|k| servers.quic[(first + k) % 3]).collect();
    let started: Started = Arc::default();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let agent = sim_agent(
        &agent_identity,
        order,
        a.trials * 4 + 50,
        started.clone(),
        done_tx,
    )
    .await?;

    let mut fulfilled = Vec::new();
    let mut relinked = Vec::new();
    let mut probes_total = Probes::default();
    let mut trial = 0;
    while (fulfilled.len() < a.trials || relinked.len() < a.trials) && trial < a.trials * 4 {
        trial += 1;
        let leader = settled(&client, &servers.http).await?;
        let linked = agent.connected_to().context("agent not linked")?;
        let agent_node = servers
            .quic
            .iter()
            .position(|q| *q == linked)
            .context("agent linked to an unknown address")?;
        // The leader while leader trials are missing, unless the agent is
        // linked to it (a placement would then also wait for the agent to
        // move); else the agent's node.
        let leader_idx = (leader - 1) as usize;
        let victim = if fulfilled.len() < a.trials && agent_node != leader_idx {
            leader_idx
        } else {
            agent_node
        };
        let was_leader = victim as u64 + 1 == leader;
        let survivors: Vec<String> = (0..3)
            .filter(|i| *i != victim)
            .map(|i| servers.http[i].clone())
            .collect();
        // Drain activations of earlier trials.
        while done_rx.try_recv().is_ok() {}
        let stop = Arc::new(AtomicBool::new(false));
        let probes = Arc::new(Mutex::new(Probes::default()));
        let prober = tokio::spawn(probe(
            survivors.clone(),
            region.clone(),
            stop.clone(),
            probes.clone(),
        ));
        let killed = Instant::now();
        servers.kill(victim);
        let relink = async {
            if victim != agent_node {
                return None;
            }
            while killed.elapsed() < TRIAL_LIMIT {
                if agent.connected_to().is_some_and(|a| a != linked) {
                    return Some(killed.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            None
        };
        let first_placement = async {
            let mut attempts = 0u32;
            while killed.elapsed() < TRIAL_LIMIT {
                attempts += 1;
                let base = &survivors[attempts as usize % survivors.len()];
                if place_one(&client, base, &region, &started).await.is_ok() {
                    if let Ok(Some(_)) =
                        tokio::time::timeout(Duration::from_secs(10), done_rx.recv()).await
                    {
                        return (Some(killed.elapsed()), attempts);
                    }
                } else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            (None, attempts)
        };
        let (relink, (placed, attempts)) = tokio::join!(relink, first_placement);
        stop.store(true, Ordering::Relaxed);
        let _ = prober.await;
        let p = std::mem::take(
            &mut *probes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| d.as_millis().to_string());
        println!(
            "trial {trial}: killed node {} ({}{}); first placement FULFILLED {} ms ({attempts} attempt(s)); agent relinked {} ms; probe writes {} ok, {} failed, slowest ok {} ms",
            victim + 1,
            if was_leader { "leader" } else { "follower" },
            if victim == agent_node { ", the agent's node" } else { "" },
            ms(placed),
            ms(relink),
            p.ok,
            p.failed,
            p.slowest_ok.as_millis(),
        );
        let placed = placed.with_context(|| format!("trial {trial}: no placement fulfilled"))?;
        if was_leader && victim != agent_node {
            fulfilled.push(placed);
        }
        if victim == agent_node {
            relinked.push(relink.with_context(|| format!("trial {trial}: agent not relinked"))?);
        }
        probes_total.ok += p.ok;
        probes_total.failed += p.failed;
        probes_total.slowest_ok = probes_total.slowest_ok.max(p.slowest_ok);
        servers.spawn(victim)?;
    }
    agent.stop();
    let n_fulfilled = fulfilled.len();
    let n_relinked = relinked.len();
    println!(
        "leader killed (SIGKILL) → first placement FULFILLED: median {:.0} ms, p95 {:.0} ms over {n_fulfilled} trials",
        percentile(&mut fulfilled, 0.5),
        percentile(&mut fulfilled, 0.95),
    );
    println!(
        "agent's node killed (SIGKILL) → agent relinked: median {:.0} ms, p95 {:.0} ms over {n_relinked} trials",
        percentile(&mut relinked, 0.5),
        percentile(&mut relinked, 0.95),
    );
    println!(
        "probe writes during the trials: {} ok, {} failed; slowest ok {} ms",
        probes_total.ok,
        probes_total.failed,
        probes_total.slowest_ok.as_millis()
    );
    Ok(())
}
