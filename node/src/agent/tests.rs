//! Agent tests: the real sample DS (and the Python example DS) under a real
//! agent; only the link to the cluster is an in-memory fake that records
//! what the agent sends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use futures::future::BoxFuture;
use respawn_types::agent::{AgentToServer, BattleSessionSpec, ServerReply};
use respawn_types::sdk as api;
use respawn_types::{
    BattleSessionId, PlacementId, PlayerBattleSessionId, RuntimeConfig, ServerMode, TitleRegionId,
};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long any awaited condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

type ReplyFn = Box<dyn Fn(&AgentToServer) -> Option<ServerReply> + Send + Sync>;

/// The cluster, as far as the agent can tell: records every delivered
/// message; can be taken down.
#[derive(Default)]
struct FakeLink {
    log: Mutex<Vec<AgentToServer>>,
    changed: Notify,
    down: AtomicBool,
    /// Calls refused because the link was down.
    refused: AtomicUsize,
    /// Custom replies (default `Ok`).
    reply: Mutex<Option<ReplyFn>>,
}

impl ServerLink for FakeLink {
    fn call(&self, msg: AgentToServer) -> BoxFuture<'_, Result<ServerReply, LinkDown>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                self.refused.fetch_add(1, Ordering::SeqCst);
                self.changed.notify_waiters();
                return Err(LinkDown("test link is down".into()));
            }
            let reply = self
                .reply
                .lock()
                .unwrap()
                .as_ref()
                .and_then(|f| f(&msg))
                .unwrap_or(ServerReply::Ok);
            self.log.lock().unwrap().push(msg);
            self.changed.notify_waiters();
            Ok(reply)
        })
    }
}

fn workspace_root() -> PathBuf {
    match std::env::var_os("RESPAWN_WORKSPACE_ROOT") {
        Some(root) => root.into(),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_owned(),
    }
}

/// The sample DS binary, built once per test run (`RESPAWN_SAMPLE_DS_BIN`
/// overrides).
fn sample_ds() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("RESPAWN_SAMPLE_DS_BIN") {
            return bin.into();
        }
        let root = workspace_root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "sample-ds"])
            .current_dir(&root)
            .status()
            .expect("cannot run cargo build -p sample-ds");
        assert!(status.success(), "cargo build -p sample-ds failed");
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(t) => root.join(t),
            None => root.join("target"),
        };
        let bin = target.join("debug").join("sample-ds");
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
    .clone()
}

fn fleet(runtime: RuntimeConfig, health_check_interval_ms: u64) -> Fleet {
    Fleet {
        id: FleetId::new_unchecked("fleet-test"),
        title_region_id: TitleRegionId::new_unchecked("tr-test"),
        name: "test".into(),
        mode: ServerMode::Simple,
        runtime,
        activation_timeout_ms: 60_000,
        placement_timeout_ms: 60_000,
        health_check_interval_ms,
        process_ending_grace_ms: 120_000,
        max_placement_attempts: 3,
    }
}

fn sample_runtime(processes: u32, extra: &[&str]) -> RuntimeConfig {
    let mut args = vec!["--session-secs".to_owned(), "600".to_owned()];
    args.extend(extra.iter().map(|s| s.to_string()));
    RuntimeConfig {
        launch_path: sample_ds().to_string_lossy().into_owned(),
        args,
        env: [("RUST_LOG".to_owned(), "info".to_owned())].into(),
        processes_per_host: processes,
    }
}

fn sh_runtime(script: &str) -> RuntimeConfig {
    RuntimeConfig {
        launch_path: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        env: Default::default(),
        processes_per_host: 1,
    }
}

struct Harness {
    agent: Agent,
    link: Arc<FakeLink>,
    dir: tempfile::TempDir,
}

async fn start(fleet: Fleet, kill_grace: Duration) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    let mut config = AgentConfig::new(
        HostId::new_unchecked("host-test"),
        FleetId::new_unchecked("fleet-test"),
        "127.0.0.1",
        dir.path().join("data"),
    );
    config.kill_grace = kill_grace;
    let agent = Agent::start(config, link.clone()).await.unwrap();
    agent.apply_fleet(fleet).unwrap();
    Harness { agent, link, dir }
}

impl Harness {
    /// Waits until `f` finds what it wants in the messages delivered so far.
    async fn wait_log<T>(&self, what: &str, mut f: impl FnMut(&[AgentToServer]) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let changed = self.link.changed.notified();
            if let Some(v) = f(&self.link.log.lock().unwrap()) {
                return v;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!(
                    "timed out waiting for {what}; delivered: {:#?}",
                    self.link.log.lock().unwrap()
                );
            }
        }
    }

    /// Waits until `n` distinct processes have reported ProcessReady;
    /// returns them in order with their ports.
    async fn wait_ready(&self, n: usize) -> Vec<(ProcessId, u16)> {
        self.wait_log(&format!("{n} ProcessReady"), |log| {
            let ready: Vec<_> = log
                .iter()
                .filter_map(|m| match m {
                    AgentToServer::ProcessReady {
                        process_id, port, ..
                    } => Some((process_id.clone(), *port)),
                    _ => None,
                })
                .collect();
            (ready.len() >= n).then_some(ready)
        })
        .await
    }

    async fn wait_exited(&self, id: &ProcessId) -> ExitReason {
        self.wait_log(&format!("ProcessExited of {id}"), |log| {
            log.iter().find_map(|m| match m {
                AgentToServer::ProcessExited { process_id, reason } if process_id == id => {
                    Some(reason.clone())
                }
                _ => None,
            })
        })
        .await
    }

    /// Polls the agent's own state (for conditions the link cannot show).
    async fn wait_state(&self, what: &str, mut f: impl FnMut(&Registry) -> bool) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !f(&self.agent.shared.reg()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn token_of(&self, id: &ProcessId) -> String {
        self.agent.shared.reg().procs[id].token.clone()
    }

    fn index_of(&self, pred: impl Fn(&AgentToServer) -> bool) -> Option<usize> {
        self.link.log.lock().unwrap().iter().position(pred)
    }
}

fn spec(process_port: u16, bs: &str, players: &[&str]) -> BattleSessionSpec {
    BattleSessionSpec {
        battle_session_id: BattleSessionId::new_unchecked(bs),
        placement_id: PlacementId::new_unchecked("pl-1"),
        title_region_id: TitleRegionId::new_unchecked("tr-test"),
        fleet_id: FleetId::new_unchecked("fleet-test"),
        max_players: 4,
        properties: [("map".to_owned(), "dust".to_owned())].into(),
        players: players
            .iter()
            .map(|p| respawn_types::agent::PlayerSlot {
                player_id: respawn_types::PlayerId::new_unchecked(format!("player-{p}")),
                player_battle_session_id: PlayerBattleSessionId::new_unchecked(*p),
                player_data: String::new(),
            })
            .collect(),
        ip: "127.0.0.1".into(),
        port: process_port,
    }
}

/// A game client connected to a DS.
struct Client {
    read: BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (read, write) = stream.into_split();
        Client {
            read: BufReader::new(read),
            write,
        }
    }

    async fn say(&mut self, line: &str) -> String {
        self.write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        let mut reply = String::new();
        tokio::time::timeout(DEADLINE, self.read.read_line(&mut reply))
            .await
            .unwrap()
            .unwrap();
        reply.trim_end().to_owned()
    }
}

async fn wait_file_contains(path: &Path, needle: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never contained {needle:?}: {text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test]
async fn launches_processes_that_report_started_then_ready() {
    let h = start(fleet(sample_runtime(2, &[]), 5_000), Duration::from_secs(5)).await;
    let ready = h.wait_ready(2).await;
    for (id, port) in &ready {
        assert_ne!(*port, 0);
        let started = h
            .index_of(|m| matches!(m, AgentToServer::ProcessStarted { process_id, .. } if process_id == id))
            .expect("ProcessStarted reported");
        let readied = h
            .index_of(
                |m| matches!(m, AgentToServer::ProcessReady { process_id, .. } if process_id == id),
            )
            .unwrap();
        assert!(
            started < readied,
            "ProcessStarted must come before ProcessReady"
        );
    }
    let live = h.agent.live_processes();
    assert_eq!(live.len(), 2);
    for (id, port) in &ready {
        let p = live.iter().find(|p| &p.process_id == id).unwrap();
        assert_eq!(p.port, Some(*port));
        assert!(!p.ending);
        // The sample DS logs into RESPAWN_LOG_DIR and names that file.
        let log_dir = h.dir.path().join("data").join("logs").join(id.as_str());
        assert_eq!(
            p.log_paths,
            vec![log_dir.join("sample-ds.log").to_string_lossy().into_owned()]
        );
        // Its stdout is captured; it logs its RESPAWN_PROCESS_ID once ready.
        wait_file_contains(
            &log_dir.join("stdout.log"),
            &format!("process ready process_id={id}"),
        )
        .await;
    }
    let hello = h.agent.hello();
    assert_eq!(hello.live_processes, live);
    assert_eq!(hello.host_id.as_str(), "host-test");
}

#[tokio::test]
async fn start_battle_session_is_activated_and_players_flow_until_the_ds_ends() {
    let h = start(fleet(sample_runtime(1, &[]), 5_000), Duration::from_secs(5)).await;
    // The cluster knows only pbs-1 and pbs-2.
    *h.link.reply.lock().unwrap() = Some(Box::new(|m| match m {
        AgentToServer::AcceptPlayerBattleSession {
            player_battle_session_id,
            ..
        } if player_battle_session_id.as_str() == "pbs-x" => Some(ServerReply::Err(
            WireError::new(ErrorCode::NotFound, "no player battle session pbs-x"),
        )),
        _ => None,
    }));
    let (id, port) = h.wait_ready(1).await.remove(0);

    let reply = h
        .agent
        .handle_command(ServerToAgent::StartBattleSession {
            process_id: id.clone(),
            session: spec(port, "bs-1", &["pbs-1", "pbs-2"]),
        })
        .await;
    assert_eq!(reply, AgentReply::Ok);
    h.wait_log("ActivateBattleSession", |log| {
        log.iter()
            .any(|m| {
                matches!(m, AgentToServer::ActivateBattleSession { process_id, battle_session_id }
                if process_id == &id && battle_session_id.as_str() == "bs-1")
            })
            .then_some(())
    })
    .await;

    let mut p1 = Client::connect(port).await;
    assert_eq!(p1.say("JOIN pbs-1").await, "OK");
    let mut p2 = Client::connect(port).await;
    let refused = p2.say("JOIN pbs-x").await;
    assert!(
        refused.starts_with("ERR") && refused.contains("no player battle session pbs-x"),
        "{refused}"
    );
    assert_eq!(p2.say("JOIN pbs-2").await, "OK");
    assert_eq!(p2.say("DISCONNECT").await, "OK");
    let mut p2 = Client::connect(port).await;
    assert_eq!(p2.say("JOIN pbs-2").await, "OK");
    assert_eq!(p1.say("LEAVE").await, "OK");
    // Closing the connection counts as leaving.
    drop(p2);

    let reason = h.wait_exited(&id).await;
    assert_eq!(
        reason,
        ExitReason::Exited {
            code: Some(0),
            signal: None
        }
    );
    let log = h.link.log.lock().unwrap().clone();
    let of_id: Vec<String> = log
        .iter()
        .filter_map(|m| {
            let (name, pid, pbs) = match m {
                AgentToServer::AcceptPlayerBattleSession {
                    process_id,
                    player_battle_session_id,
                    ..
                } => ("accept", process_id, Some(player_battle_session_id)),
                AgentToServer::DisconnectPlayerBattleSession {
                    process_id,
                    player_battle_session_id,
                    ..
                } => ("disconnect", process_id, Some(player_battle_session_id)),
                AgentToServer::RemovePlayerBattleSession {
                    process_id,
                    player_battle_session_id,
                    ..
                } => ("remove", process_id, Some(player_battle_session_id)),
                AgentToServer::ProcessEnding { process_id } => ("ending", process_id, None),
                AgentToServer::ProcessExited { process_id, .. } => ("exited", process_id, None),
                _ => return None,
            };
            (pid == &id).then(|| match pbs {
                Some(p) => format!("{name} {p}"),
                None => name.to_owned(),
            })
        })
        .collect();
    assert_eq!(
        of_id,
        vec![
            "accept pbs-1",
            "accept pbs-x",
            "accept pbs-2",
            "disconnect pbs-2",
            "accept pbs-2",
            "remove pbs-1",
            "remove pbs-2",
            "ending",
            "exited"
        ]
    );
    // A fresh process replaces it.
    let next = h.wait_ready(2).await.remove(1);
    assert_ne!(next.0, id);
}

#[tokio::test]
async fn an_externally_killed_process_is_reported_and_replaced() {
    let h = start(fleet(sample_runtime(1, &[]), 5_000), Duration::from_secs(5)).await;
    let (id, _) = h.wait_ready(1).await.remove(0);
    let pid = h.agent.live_processes()[0].pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert_eq!(
        h.wait_exited(&id).await,
        ExitReason::Exited {
            code: None,
            signal: Some(9)
        }
    );
    let (next, _) = h.wait_ready(2).await.remove(1);
    assert_ne!(next, id);
    let exited_at = h
        .index_of(
            |m| matches!(m, AgentToServer::ProcessExited { process_id, .. } if process_id == &id),
        )
        .unwrap();
    let restarted_at = h
        .index_of(|m| matches!(m, AgentToServer::ProcessStarted { process_id, .. } if process_id == &next))
        .unwrap();
    assert!(exited_at < restarted_at);
    // The old token no longer opens the local API.
    assert!(h.agent.shared.reg().tokens.values().all(|p| p != &id));
}

#[tokio::test]
async fn a_hung_process_is_terminated_as_unhealthy_and_replaced() {
    // A long kill grace: the process must leave because it got OnProcessTerminate.
    let h = start(fleet(sample_runtime(1, &[]), 250), Duration::from_secs(120)).await;
    let (id, port) = h.wait_ready(1).await.remove(0);
    // It answers health checks while well (a process that did not would be
    // terminated by the fourth).
    h.wait_state("a few health checks", |reg| {
        reg.procs
            .get(&id)
            .and_then(|p| p.health.as_ref())
            .is_some_and(|t| t.sent() >= 5)
            || !reg.procs.contains_key(&id)
    })
    .await;
    assert!(
        h.agent
            .shared
            .reg()
            .procs
            .get(&id)
            .is_some_and(|p| !p.terminating),
        "a healthy process was terminated"
    );
    assert_eq!(Client::connect(port).await.say("HANG").await, "OK");
    assert_eq!(h.wait_exited(&id).await, ExitReason::Unhealthy);
    let (next, _) = h.wait_ready(2).await.remove(1);
    assert_ne!(next, id);
    // The DS saw OnProcessTerminate.
    let stdout = h
        .dir
        .path()
        .join("data/logs")
        .join(id.as_str())
        .join("stdout.log");
    wait_file_contains(&stdout, "process terminate requested").await;
}

#[tokio::test]
async fn a_sick_process_is_terminated_as_unhealthy() {
    let h = start(fleet(sample_runtime(1, &[]), 250), Duration::from_secs(120)).await;
    let (id, port) = h.wait_ready(1).await.remove(0);
    assert_eq!(Client::connect(port).await.say("SICK").await, "OK");
    assert_eq!(h.wait_exited(&id).await, ExitReason::Unhealthy);
}

#[tokio::test]
async fn terminate_and_kill_commands() {
    // A sample DS obeys TerminateProcess by itself.
    let h = start(
        fleet(sample_runtime(1, &[]), 5_000),
        Duration::from_secs(120),
    )
    .await;
    let (id, _) = h.wait_ready(1).await.remove(0);
    let reply = h
        .agent
        .handle_command(ServerToAgent::TerminateProcess {
            process_id: id.clone(),
            reason: "activation timed out".into(),
        })
        .await;
    assert_eq!(reply, AgentReply::Ok);
    assert_eq!(h.wait_exited(&id).await, ExitReason::Killed);
    let (next, _) = h.wait_ready(2).await.remove(1);
    // KillProcess kills at once.
    assert_eq!(
        h.agent
            .handle_command(ServerToAgent::KillProcess {
                process_id: next.clone()
            })
            .await,
        AgentReply::Ok
    );
    assert_eq!(h.wait_exited(&next).await, ExitReason::EndingGraceExpired);
    // Commands for processes this host does not run.
    let ghost = ProcessId::new_unchecked("proc-ghost");
    for cmd in [
        ServerToAgent::KillProcess {
            process_id: ghost.clone(),
        },
        ServerToAgent::TerminateProcess {
            process_id: ghost.clone(),
            reason: "x".into(),
        },
        ServerToAgent::TerminateBattleSession {
            process_id: ghost.clone(),
            battle_session_id: BattleSessionId::new_unchecked("bs-1"),
        },
        ServerToAgent::StartBattleSession {
            process_id: ghost.clone(),
            session: spec(1, "bs-1", &[]),
        },
    ] {
        match h.agent.handle_command(cmd).await {
            AgentReply::Err(e) => assert_eq!(e.code, ErrorCode::NotFound),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_process_that_ignores_terminate_is_killed_after_the_grace() {
    // sh never reads its events, so it never hears OnProcessTerminate.
    let h = start(
        fleet(sh_runtime("exec sleep 600"), 5_000),
        Duration::from_millis(200),
    )
    .await;
    let id = h
        .wait_log("ProcessStarted", |log| {
            log.iter().find_map(|m| match m {
                AgentToServer::ProcessStarted { process_id, .. } => Some(process_id.clone()),
                _ => None,
            })
        })
        .await;
    // Not ready: it cannot take a battle session.
    match h
        .agent
        .handle_command(ServerToAgent::StartBattleSession {
            process_id: id.clone(),
            session: spec(1, "bs-1", &[]),
        })
        .await
    {
        AgentReply::Err(e) => assert_eq!(e.code, ErrorCode::InvalidState),
        other => panic!("expected InvalidState, got {other:?}"),
    }
    let reply = h
        .agent
        .handle_command(ServerToAgent::TerminateProcess {
            process_id: id.clone(),
            reason: "bye".into(),
        })
        .await;
    assert_eq!(reply, AgentReply::Ok);
    assert_eq!(h.wait_exited(&id).await, ExitReason::Killed);
}

#[tokio::test]
async fn the_local_api_rejects_bad_requests_with_json_errors() {
    let h = start(
        fleet(sh_runtime("exec sleep 600"), 5_000),
        Duration::from_secs(1),
    )
    .await;
    h.wait_state("a process", |reg| !reg.procs.is_empty()).await;
    let id = h.agent.live_processes()[0].process_id.clone();
    let token = h.token_of(&id);
    let base = h.agent.sdk_endpoint().to_owned();
    let http = http();
    let url = |p: &str| format!("{base}{p}");

    async fn expect(resp: reqwest::Response, status: u16, code: &str, needle: &str) {
        assert_eq!(resp.status().as_u16(), status);
        let body: serde_json::Value = resp.json().await.expect("a JSON error body");
        assert_eq!(body["error"], code, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(needle),
            "{message:?} should mention {needle:?}"
        );
    }

    let ready = serde_json::json!({"port": 7777});
    // No token, a wrong token, a wrong scheme.
    expect(
        http.post(url(api::PATH_PROCESS_READY))
            .json(&ready)
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
        "Authorization",
    )
    .await;
    expect(
        http.post(url(api::PATH_PROCESS_READY))
            .bearer_auth("nope")
            .json(&ready)
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
        "unknown process token",
    )
    .await;
    expect(
        http.get(url(api::PATH_EVENTS))
            .header("authorization", format!("Basic {token}"))
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
        "Bearer",
    )
    .await;
    // Garbage, wrong shapes, bad values.
    let post = |path: &str, body: &'static str| {
        http.post(url(path))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
    };
    expect(
        post(api::PATH_PROCESS_READY, "{not json")
            .send()
            .await
            .unwrap(),
        400,
        "bad_request",
        "invalid JSON",
    )
    .await;
    expect(
        post(api::PATH_PROCESS_READY, "{}").send().await.unwrap(),
        400,
        "bad_request",
        "port",
    )
    .await;
    expect(
        post(api::PATH_PROCESS_READY, "{\"port\":70000}")
            .send()
            .await
            .unwrap(),
        400,
        "bad_request",
        "70000",
    )
    .await;
    expect(
        post(api::PATH_PROCESS_READY, "{\"port\":0}")
            .send()
            .await
            .unwrap(),
        400,
        "bad_request",
        "port",
    )
    .await;
    expect(
        post(api::PATH_ACTIVATE, "{\"battle_session_id\":\"bs 1/../x\"}")
            .send()
            .await
            .unwrap(),
        400,
        "bad_request",
        "battle_session_id",
    )
    .await;
    expect(
        post(api::PATH_ACCEPT_PLAYER, "{\"battle_session_id\":\"bs-1\"}")
            .send()
            .await
            .unwrap(),
        400,
        "bad_request",
        "player_battle_session_id",
    )
    .await;
    expect(
        post(api::PATH_PROCESS_ENDING, "[1,2]")
            .send()
            .await
            .unwrap(),
        400,
        "bad_request",
        "expected {}",
    )
    .await;
    let huge = format!(
        "{{\"port\":1,\"log_paths\":[\"{}\"]}}",
        "x".repeat(70 * 1024)
    );
    expect(
        http.post(url(api::PATH_PROCESS_READY))
            .bearer_auth(&token)
            .body(huge)
            .send()
            .await
            .unwrap(),
        413,
        "bad_request",
        "larger than",
    )
    .await;
    // Health answers before ProcessReady.
    expect(
        post(api::PATH_HEALTH, "{\"seq\":1,\"healthy\":true}")
            .send()
            .await
            .unwrap(),
        409,
        "invalid_state",
        "ProcessReady",
    )
    .await;
    // Unknown paths and methods.
    expect(
        http.get(url("/v1/nope")).send().await.unwrap(),
        404,
        "not_found",
        "/v1/nope",
    )
    .await;
    expect(
        http.get(url(api::PATH_PROCESS_READY)).send().await.unwrap(),
        405,
        "bad_request",
        "GET",
    )
    .await;
    // None of that changed anything.
    assert_eq!(h.agent.live_processes()[0].port, None);
    assert!(h
        .link
        .log
        .lock()
        .unwrap()
        .iter()
        .all(|m| !matches!(m, AgentToServer::ProcessReady { .. })));

    // The same token works for a well-formed call; a second ProcessReady
    // with another port conflicts.
    let ok = post(
        api::PATH_PROCESS_READY,
        "{\"port\":7777,\"log_paths\":[\"/tmp/a.log\"]}",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(
        ok.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"ok": true})
    );
    expect(
        post(api::PATH_PROCESS_READY, "{\"port\":7778}")
            .send()
            .await
            .unwrap(),
        409,
        "conflict",
        "7777",
    )
    .await;
    expect(
        post(api::PATH_HEALTH, "{\"seq\":99,\"healthy\":true}")
            .send()
            .await
            .unwrap(),
        409,
        "conflict",
        "99",
    )
    .await;
    assert_eq!(h.agent.live_processes()[0].port, Some(7777));
}

#[tokio::test]
async fn reports_survive_a_link_outage_in_order_and_sdk_calls_get_503() {
    let h = start(fleet(sample_runtime(1, &[]), 5_000), Duration::from_secs(5)).await;
    let (id, _) = h.wait_ready(1).await.remove(0);
    h.link.down.store(true, Ordering::SeqCst);
    let pid = h.agent.live_processes()[0].pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The replacement starts while the link is down; its reports queue.
    h.wait_state("a replacement that called ProcessReady", |reg| {
        reg.procs.values().any(|p| p.id != id && p.port.is_some())
    })
    .await;
    let next = h.agent.live_processes()[0].process_id.clone();
    assert!(h.link.refused.load(Ordering::SeqCst) > 0);
    assert!(
        h.agent.pending_reports() >= 3,
        "ProcessExited, ProcessStarted, ProcessReady are queued"
    );

    // A forwarded SDK call fails fast with 503 while the link is down.
    let resp = http()
        .post(format!("{}{}", h.agent.sdk_endpoint(), api::PATH_ACTIVATE))
        .bearer_auth(h.token_of(&next))
        .json(&serde_json::json!({"battle_session_id": "bs-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unavailable");

    h.link.down.store(false, Ordering::SeqCst);
    h.agent.link_up();
    h.wait_ready(2).await;
    let log = h.link.log.lock().unwrap().clone();
    let tail: Vec<&AgentToServer> = log
        .iter()
        .skip_while(|m| !matches!(m, AgentToServer::ProcessExited { .. }))
        .collect();
    assert!(
        matches!(tail[0], AgentToServer::ProcessExited { process_id, .. } if process_id == &id),
        "{tail:?}"
    );
    assert!(
        matches!(tail[1], AgentToServer::ProcessStarted { process_id, .. } if process_id == &next),
        "{tail:?}"
    );
    assert!(
        matches!(tail[2], AgentToServer::ProcessReady { process_id, .. } if process_id == &next),
        "{tail:?}"
    );
}

#[tokio::test]
async fn processes_that_cannot_start_are_reported_and_retried() {
    let mut rt = sh_runtime("");
    rt.launch_path = "/nonexistent/ds".into();
    let h = start(fleet(rt, 5_000), Duration::from_secs(1)).await;
    let failures = h
        .wait_log("two LaunchFailed", |log| {
            let ids: Vec<_> = log
                .iter()
                .filter_map(|m| match m {
                    AgentToServer::ProcessExited {
                        process_id,
                        reason: ExitReason::LaunchFailed { error },
                    } => Some((process_id.clone(), error.clone())),
                    _ => None,
                })
                .collect();
            (ids.len() >= 2).then_some(ids)
        })
        .await;
    assert_ne!(failures[0].0, failures[1].0);
    assert!(
        failures[0].1.contains("/nonexistent/ds"),
        "{}",
        failures[0].1
    );

    // A process that exits at once is reported with its exit code.
    let h = start(fleet(sh_runtime("exit 3"), 5_000), Duration::from_secs(1)).await;
    let id = h
        .wait_log("ProcessStarted", |log| {
            log.iter().find_map(|m| match m {
                AgentToServer::ProcessStarted { process_id, .. } => Some(process_id.clone()),
                _ => None,
            })
        })
        .await;
    assert_eq!(
        h.wait_exited(&id).await,
        ExitReason::Exited {
            code: Some(3),
            signal: None
        }
    );
}

#[tokio::test]
async fn a_fleet_for_another_fleet_is_refused() {
    let h = start(
        fleet(sh_runtime("exec sleep 600"), 5_000),
        Duration::from_secs(1),
    )
    .await;
    let mut other = fleet(sh_runtime("true"), 5_000);
    other.id = FleetId::new_unchecked("fleet-other");
    assert!(matches!(
        h.agent.apply_fleet(other.clone()),
        Err(AgentError::WrongFleet { .. })
    ));
    match h
        .agent
        .handle_command(ServerToAgent::FleetUpdated { fleet: other })
        .await
    {
        AgentReply::Err(e) => assert_eq!(e.code, ErrorCode::BadRequest),
        r => panic!("{r:?}"),
    }
    let mut bad = fleet(sh_runtime("true"), 5_000);
    bad.runtime.processes_per_host = MAX_PROCESSES_PER_HOST + 1;
    assert!(matches!(
        h.agent.apply_fleet(bad),
        Err(AgentError::InvalidFleet(_))
    ));
    let mut config = AgentConfig::new(
        HostId::new_unchecked("h"),
        FleetId::new_unchecked("f"),
        "1.2.3.4",
        h.dir.path(),
    );
    config.local_api_addr = "0.0.0.0:0".parse().unwrap();
    assert!(matches!(
        Agent::start(config, h.link.clone()).await,
        Err(AgentError::NotLoopback(_))
    ));
}

#[tokio::test]
async fn shutdown_kills_every_process_and_reports_it() {
    let h = start(
        fleet(sh_runtime("exec sleep 600"), 5_000),
        Duration::from_secs(1),
    )
    .await;
    let mut rt = sh_runtime("exec sleep 600");
    rt.processes_per_host = 2;
    h.agent.apply_fleet(fleet(rt, 5_000)).unwrap();
    h.wait_state("two processes", |reg| reg.procs.len() == 2)
        .await;
    let ids: Vec<ProcessId> = h
        .agent
        .live_processes()
        .into_iter()
        .map(|p| p.process_id)
        .collect();
    h.agent.shutdown().await;
    assert!(h.agent.live_processes().is_empty());
    for id in &ids {
        assert_eq!(h.wait_exited(id).await, ExitReason::Killed);
    }
}

#[tokio::test]
async fn the_python_example_ds_works_under_the_agent() {
    let script = workspace_root().join("examples/python-ds/ds.py");
    assert!(script.exists(), "{} is missing", script.display());
    let rt = RuntimeConfig {
        launch_path: "python3".into(),
        args: vec!["-u".into(), script.to_string_lossy().into_owned()],
        env: Default::default(),
        processes_per_host: 1,
    };
    let h = start(fleet(rt, 250), Duration::from_secs(120)).await;
    let (id, port) = h.wait_ready(1).await.remove(0);
    // It answers health checks.
    h.wait_state("answered health checks", |reg| {
        reg.procs
            .get(&id)
            .and_then(|p| p.health.as_ref())
            .is_some_and(|t| t.sent() >= 6)
            || !reg.procs.contains_key(&id)
    })
    .await;
    assert!(
        h.agent
            .shared
            .reg()
            .procs
            .get(&id)
            .is_some_and(|p| !p.terminating),
        "the Python DS failed its health checks"
    );
    let reply = h
        .agent
        .handle_command(ServerToAgent::StartBattleSession {
            process_id: id.clone(),
            session: spec(port, "bs-py", &["pbs-1"]),
        })
        .await;
    assert_eq!(reply, AgentReply::Ok);
    h.wait_log("ActivateBattleSession from Python", |log| {
        log.iter()
            .any(|m| matches!(m, AgentToServer::ActivateBattleSession { process_id, battle_session_id } if process_id == &id && battle_session_id.as_str() == "bs-py"))
            .then_some(())
    })
    .await;
    let mut player = Client::connect(port).await;
    assert_eq!(player.say("JOIN pbs-1").await, "OK");
    assert_eq!(player.say("LEAVE").await, "OK");
    assert_eq!(
        h.wait_exited(&id).await,
        ExitReason::Exited {
            code: Some(0),
            signal: None
        }
    );
    let log = h.link.log.lock().unwrap().clone();
    let names: Vec<&str> = log
        .iter()
        .filter_map(|m| match m {
            AgentToServer::AcceptPlayerBattleSession { process_id, .. } if process_id == &id => {
                Some("accept")
            }
            AgentToServer::RemovePlayerBattleSession { process_id, .. } if process_id == &id => {
                Some("remove")
            }
            AgentToServer::ProcessEnding { process_id } if process_id == &id => Some("ending"),
            _ => None,
        })
        .collect();
    assert_eq!(names, vec!["accept", "remove", "ending"]);
}

#[test]
fn the_protocol_document_matches_the_code() {
    let root = workspace_root();
    let doc = std::fs::read_to_string(root.join("docs/sdk-protocol.md")).unwrap();
    // The Python DS listed in the document is the one the test above runs.
    let script = std::fs::read_to_string(root.join("examples/python-ds/ds.py")).unwrap();
    assert!(
        doc.contains(&format!("```python\n{script}```")),
        "docs/sdk-protocol.md must list examples/python-ds/ds.py verbatim"
    );
    // Every event example parses as the event the agent sends, and every
    // event type is documented.
    let mut documented = std::collections::BTreeSet::new();
    for block in doc.split("```json\n").skip(1) {
        let json = block.split("```").next().unwrap();
        if json.contains("\"type\"") {
            let event: SdkEvent =
                serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
            let tag = serde_json::to_value(&event).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned();
            documented.insert(tag);
        }
    }
    assert_eq!(
        documented.into_iter().collect::<Vec<_>>(),
        vec![
            "health_check",
            "process_terminate",
            "start_battle_session",
            "terminate_battle_session"
        ]
    );
    // Every path the agent serves is documented.
    for path in [
        api::PATH_EVENTS,
        api::PATH_PROCESS_READY,
        api::PATH_HEALTH,
        api::PATH_ACTIVATE,
        api::PATH_ACCEPT_PLAYER,
        api::PATH_DISCONNECT_PLAYER,
        api::PATH_REMOVE_PLAYER,
        api::PATH_TERMINATE_BATTLE_SESSION,
        api::PATH_PROCESS_ENDING,
    ] {
        assert!(
            doc.contains(&format!("`POST {path}`")) || doc.contains(&format!("`GET {path}`")),
            "{path} is not documented"
        );
    }
}

#[tokio::test]
async fn the_sample_ds_ends_its_session_on_time_or_when_the_platform_ends_it() {
    // --no-activate and a one-second session: it never activates, then ends.
    let rt = RuntimeConfig {
        launch_path: sample_ds().to_string_lossy().into_owned(),
        args: vec!["--session-secs".into(), "1".into(), "--no-activate".into()],
        env: Default::default(),
        processes_per_host: 1,
    };
    let h = start(fleet(rt, 5_000), Duration::from_secs(5)).await;
    let (id, port) = h.wait_ready(1).await.remove(0);
    let start_cmd = |id: &ProcessId, bs: &str| ServerToAgent::StartBattleSession {
        process_id: id.clone(),
        session: spec(port, bs, &[]),
    };
    assert_eq!(
        h.agent.handle_command(start_cmd(&id, "bs-1")).await,
        AgentReply::Ok
    );
    assert_eq!(
        h.wait_exited(&id).await,
        ExitReason::Exited {
            code: Some(0),
            signal: None
        }
    );
    let log = h.link.log.lock().unwrap().clone();
    assert!(log
        .iter()
        .any(|m| matches!(m, AgentToServer::ProcessEnding { process_id } if process_id == &id)));
    assert!(!log.iter().any(|m| matches!(m, AgentToServer::ActivateBattleSession { process_id, .. } if process_id == &id)));

    // The platform terminating the session ends it too.
    let h = start(fleet(sample_runtime(1, &[]), 5_000), Duration::from_secs(5)).await;
    let (id, _) = h.wait_ready(1).await.remove(0);
    assert_eq!(
        h.agent.handle_command(start_cmd(&id, "bs-2")).await,
        AgentReply::Ok
    );
    let reply = h
        .agent
        .handle_command(ServerToAgent::TerminateBattleSession {
            process_id: id.clone(),
            battle_session_id: BattleSessionId::new_unchecked("bs-2"),
        })
        .await;
    assert_eq!(reply, AgentReply::Ok);
    assert_eq!(
        h.wait_exited(&id).await,
        ExitReason::Exited {
            code: Some(0),
            signal: None
        }
    );
    assert!(h
        .index_of(|m| matches!(m, AgentToServer::ProcessEnding { process_id } if process_id == &id))
        .is_some());
}

#[tokio::test]
async fn reports_refused_for_want_of_a_leader_are_retried_in_order() {
    let h = start(
        fleet(sh_runtime("exec sleep 600"), 5_000),
        Duration::from_secs(1),
    )
    .await;
    h.wait_state("a process", |reg| !reg.procs.is_empty()).await;
    let id = h.agent.live_processes()[0].process_id.clone();
    let refusals = Arc::new(AtomicUsize::new(0));
    let counter = refusals.clone();
    *h.link.reply.lock().unwrap() = Some(Box::new(move |m| match m {
        AgentToServer::ProcessExited { .. } if counter.fetch_add(1, Ordering::SeqCst) < 2 => Some(
            ServerReply::Err(WireError::new(ErrorCode::NotLeader, "election in progress")),
        ),
        _ => None,
    }));
    assert_eq!(
        h.agent
            .handle_command(ServerToAgent::KillProcess {
                process_id: id.clone()
            })
            .await,
        AgentReply::Ok
    );
    // The replacement's ProcessStarted waits behind the retried ProcessExited.
    let next = h
        .wait_log("the replacement's ProcessStarted", |log| {
            log.iter().find_map(|m| match m {
                AgentToServer::ProcessStarted { process_id, .. } if process_id != &id => {
                    Some(process_id.clone())
                }
                _ => None,
            })
        })
        .await;
    let log = h.link.log.lock().unwrap().clone();
    let exits: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, m)| matches!(m, AgentToServer::ProcessExited { process_id, .. } if process_id == &id))
        .map(|(i, _)| i)
        .collect();
    let started = log
        .iter()
        .position(|m| matches!(m, AgentToServer::ProcessStarted { process_id, .. } if process_id == &next))
        .unwrap();
    assert_eq!(exits.len(), 3, "two refusals, then accepted: {log:#?}");
    assert!(exits.iter().all(|&i| i < started));
}
