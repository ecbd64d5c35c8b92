//! Agent tests: the real sample DS (and the Python example DS) under a real
//! agent; only the link to the cluster is an in-memory fake that records
//! what the agent sends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod health;
mod lifecycle;
mod local_api;
mod logs;
mod reports;
mod termination;

use crate::state::Registry;
use crate::{Agent, AgentConfig, AgentError, LinkDown, ServerLink, MAX_PROCESSES_PER_HOST};
use futures::future::BoxFuture;
use respawn_types::agent::{
    AgentReply, AgentToServer, BattleSessionSpec, ErrorCode, ServerReply, ServerToAgent, WireError,
};
use respawn_types::sdk as api;
use respawn_types::sdk::SdkEvent;
use respawn_types::{
    BattleSessionId, PlacementId, PlayerBattleSessionId, RuntimeConfig, ServerMode, TitleRegionId,
};
use respawn_types::{ExitReason, Fleet, FleetId, HostId, ProcessId};
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Notify;

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
        scaling: Default::default(),
        labels: Default::default(),
        version: 0,
        updated_at: 0,
        host_target: None,
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
                team: String::new(),
            })
            .collect(),
        teams: Vec::new(),
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
