//! `respawn bench records`: bytes per live record of the replicated state,
//! by kind. It applies real commands to a `ClusterState` in this process,
//! `--count` of one kind at a time, and divides the growth of the resident
//! set by the count (allocations are never freed between phases, so the
//! growth is what the records hold, including their index entries). The
//! JSON column is what one record adds to a snapshot.

use super::soak::rss_mb;
use anyhow::bail;
use clap::Args;
use respawn_state::{ClusterState, Command, Request, StartPlacement};
use respawn_types::*;

#[derive(Args, Clone)]
pub struct RecordsArgs {
    /// Records of each kind.
    #[arg(long, default_value_t = 100_000)]
    pub count: usize,
}

struct Run {
    s: ClusterState,
    at: UnixMillis,
}

impl Run {
    fn apply(&mut self, command: Command) -> anyhow::Result<()> {
        self.at += 1;
        let (r, _) = self.s.apply(&Request {
            at: self.at,
            command,
        });
        if let Err(e) = r {
            bail!("command refused: {e}");
        }
        Ok(())
    }
}

/// Runs `phase` and prints the RSS growth per record.
/// Runs `phase` (which answers the JSON size of one record) and prints
/// the RSS growth per record. Ids are made inside the phases, as the
/// commands that carry them are in a node.
fn measure(
    what: &str,
    per: usize,
    phase: impl FnOnce() -> anyhow::Result<usize>,
) -> anyhow::Result<()> {
    let before = rss_mb().0;
    let json = phase()?;
    let grown = (rss_mb().0 - before) * 1024.0 * 1024.0;
    println!("{what:<42} {:>8.0} B {:>8} B", grown / per as f64, json);
    Ok(())
}

pub fn records(a: RecordsArgs) -> anyhow::Result<()> {
    let n = a.count;
    if n < 1_000 {
        bail!("--count must be at least 1000");
    }
    let tr = TitleRegionId::new_unchecked("tr-dev");
    let fleet = FleetId::new_unchecked("fleet-dev");
    let host = HostId::new_unchecked("host-bench");
    let mut run = Run {
        s: ClusterState::default(),
        at: now_millis(),
    };
    run.apply(Command::PutTitleRegion(TitleRegion {
        id: tr.clone(),
        title_id: TitleId::new_unchecked("title-dev"),
        name: "dev".into(),
        title_name: "bench".into(),
        secret_id: SecretId::new_unchecked("sid-bench"),
        secret_key: "0123456789abcdef0123".into(),
    }))?;
    run.apply(Command::PutFleet(Fleet {
        id: fleet.clone(),
        title_region_id: tr.clone(),
        name: "bench".into(),
        mode: ServerMode::Simple,
        runtime: RuntimeConfig {
            launch_path: "/bin/ds".into(),
            args: vec![],
            env: Default::default(),
            processes_per_host: 1_024,
        },
        activation_timeout_ms: 60_000,
        placement_timeout_ms: 600_000,
        health_check_interval_ms: 5_000,
        process_ending_grace_ms: 120_000,
        max_placement_attempts: 3,
        scaling: Default::default(),
        labels: Default::default(),
        version: 1,
        updated_at: 0,
        host_target: None,
    }))?;
    run.apply(Command::RegisterHost {
        host: Host {
            id: host.clone(),
            fleet_id: fleet.clone(),
            ip: "203.0.113.7".into(),
            registered_at: 0,
        },
        live: vec![],
        live_vs: vec![],
    })?;
    println!("== bytes per live record ({n} of each kind; RSS growth / count)");
    println!("{:<42} {:>10} {:>10}", "kind", "memory", "JSON");

    let json_of = |v: serde_json::Result<Vec<u8>>| v.map(|b| b.len()).unwrap_or(0);
    measure("DS process (READY, 2 log paths)", n, || {
        let mut last = None;
        for _ in 0..n {
            let p = ProcessId::generate();
            run.apply(Command::ProcessStarted {
                process_id: p.clone(),
                host_id: host.clone(),
                pid: 4242,
                fleet_version: 0,
            })?;
            run.apply(Command::ProcessReady {
                process_id: p.clone(),
                port: 7777,
                log_paths: vec![
                    format!("/var/lib/respawn/agent/logs/{p}/stdout.log"),
                    format!("/var/lib/respawn/agent/logs/{p}/stderr.log"),
                ],
            })?;
            last = Some(p);
        }
        Ok(last.map_or(0, |p| json_of(serde_json::to_vec(&run.s.processes[&p]))))
    })?;

    let mut ids: Vec<BattleSessionId> = Vec::with_capacity(n);
    measure("issued battle session id", n, || {
        for _ in 0..n {
            let id = BattleSessionId::generate();
            run.apply(Command::IssueBattleSessionId {
                title_region_id: tr.clone(),
                battle_session_id: id.clone(),
                max_outstanding: None,
            })?;
            ids.push(id);
        }
        Ok(json_of(serde_json::to_vec(&run.s.issued_session_ids[&ids[0]])) + 40)
    })?;

    // Placements take the issued ids (and may reuse their memory).
    measure("placement + battle session (PENDING)", n, || {
        let mut last = None;
        for bs in &ids {
            let pl = PlacementId::generate();
            run.apply(Command::StartPlacement(StartPlacement {
                placement_id: pl.clone(),
                title_region_id: tr.clone(),
                fleet_id: fleet.clone(),
                battle_session_id: bs.clone(),
                max_players: 4,
                properties: [("map".to_string(), "de_dust".to_string())].into(),
                players: vec![],
                timeout_ms: None,
            }))?;
            last = Some(pl);
        }
        let pl = &run.s.placements[&last.unwrap_or_else(|| PlacementId::new_unchecked(""))];
        let s = &run.s.battle_sessions[&pl.battle_session_id];
        Ok(json_of(serde_json::to_vec(pl)) + json_of(serde_json::to_vec(s)))
    })?;
    measure("player battle session (RESERVED)", 2 * n, || {
        for (i, bs) in ids.iter().enumerate() {
            run.apply(Command::AddPlayers {
                title_region_id: tr.clone(),
                battle_session_id: bs.clone(),
                players: (0..2)
                    .map(|k| {
                        (
                            PlayerBattleSessionId::generate(),
                            PlayerSpec {
                                player_id: PlayerId::new_unchecked(format!("player-{i}-{k}")),
                                player_data: String::new(),
                                team: String::new(),
                            },
                        )
                    })
                    .collect(),
            })?;
        }
        Ok(run
            .s
            .player_battle_sessions
            .values()
            .map(|r| &**r)
            .next()
            .map(|p| json_of(serde_json::to_vec(p)))
            .unwrap_or(0))
    })?;

    let spec = VsSpec {
        source: VsSource::Process {
            command: "python3".into(),
        },
        args: vec![],
        env: Default::default(),
        listen_port: 8080,
        cpu_millicores: 500,
        memory_mb: 128,
        max_instances: 10,
        block_client_requests: false,
        access_log: false,
        metric_urls: vec![],
        target_concurrency: 10,
        scale_down_delay_secs: 60,
        storages: Vec::new(),
    };
    let name = VsName::parse("vs-bench")?;
    run.apply(Command::PutVirtualServer {
        title_region_id: tr.clone(),
        name: name.clone(),
        spec,
    })?;
    let m = n / 10;
    measure("VS instance (DEPLOYING)", m, || {
        for _ in 0..m {
            run.apply(Command::PlaceVsInstance {
                instance_id: VsInstanceId::generate(),
                title_region_id: tr.clone(),
                name: name.clone(),
                version: 1,
                host_id: host.clone(),
            })?;
        }
        Ok(run
            .s
            .vs_instances
            .values()
            .next()
            .map(|i| json_of(serde_json::to_vec(i)))
            .unwrap_or(0))
    })?;
    let snapshot = serde_json::to_vec(&run.s).map(|v| v.len()).unwrap_or(0);
    println!(
        "whole state as a JSON snapshot: {:.1} MB ({} processes, {} placements, {} player battle sessions)",
        snapshot as f64 / 1e6,
        run.s.processes.len(),
        run.s.placements.len(),
        run.s.player_battle_sessions.len()
    );
    Ok(())
}
