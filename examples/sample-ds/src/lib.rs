//! A sample dedicated game server (simple mode) built on the Respawn SDK.
//!
//! It hosts one battle session per process lifetime:
//!
//! 1. listens on a TCP port and calls ProcessReady with it and its log file;
//! 2. on OnStartBattleSession, records the session and activates it;
//! 3. game clients connect to the TCP port, one connection per player, and
//!    speak a line protocol:
//!    - `JOIN <player_battle_session_id>` → AcceptPlayerBattleSession,
//!    - `VS <vs> <path>` → InvokeVirtualServer (GET), answered
//!      `VS <status> <body>`,
//!      answered `OK` or `ERR <why>`;
//!    - `LEAVE` (or closing the connection) → RemovePlayerBattleSession;
//!    - `DISCONNECT` → DisconnectPlayerBattleSession (the player may JOIN
//!      again later);
//!    - test hooks: `SICK` (answer health checks "unhealthy"), `HANG` (stop
//!      answering health checks), `END` (end the session now);
//! 4. ends the session after `--session-secs`, when every player who joined
//!    has left, or when the platform terminates it: calls ProcessEnding and
//!    exits 0;
//! 5. exits at once on OnProcessTerminate.

use anyhow::Context as _;
use clap::Parser;
use respawn_sdk::{
    BattleSessionId, BattleSessionSpec, Callbacks, PlayerBattleSessionId, ServerSdk,
};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Longest line a game client may send.
const MAX_LINE: usize = 512;

#[derive(Parser, Debug, Clone)]
#[command(about = "Sample Respawn dedicated game server (simple mode)")]
struct Args {
    /// TCP port for game clients (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// End the battle session this many seconds after it starts.
    #[arg(long, env = "SAMPLE_DS_SESSION_SECS", default_value_t = 30)]
    session_secs: u64,
    /// Wait this long before calling ActivateBattleSession.
    #[arg(long, default_value_t = 0)]
    activate_delay_ms: u64,
    /// Never call ActivateBattleSession (to test activation timeouts).
    #[arg(long)]
    no_activate: bool,
    /// Stay alive this many seconds after ProcessEnding (to test the
    /// platform's ProcessEnding grace, which kills a lingering process).
    #[arg(long, default_value_t = 0)]
    linger_secs: u64,
    /// Also write `<dir>/<process id>.log` (a line at start and at the end)
    /// and name it in ProcessReady's log_paths: the agent collects it when
    /// the process ends (DS log upload).
    #[arg(long)]
    extra_log_dir: Option<std::path::PathBuf>,
}

/// Why the process is about to exit.
#[derive(Debug)]
enum Exit {
    /// The battle session is over: call ProcessEnding, then exit.
    SessionOver(&'static str),
    /// The platform asked us to stop (OnProcessTerminate): exit now.
    Terminated,
}

#[derive(Default)]
struct Session {
    spec: Option<BattleSessionSpec>,
    /// Players connected now.
    connected: HashSet<PlayerBattleSessionId>,
    /// Players who disconnected and may come back.
    disconnected: HashSet<PlayerBattleSessionId>,
    /// Has any player ever joined?
    anyone_joined: bool,
}

struct Game {
    sdk: ServerSdk,
    args: Args,
    session: Mutex<Session>,
    sick: AtomicBool,
    hung: AtomicBool,
    exit: mpsc::UnboundedSender<Exit>,
}

impl Game {
    fn session(&self) -> MutexGuard<'_, Session> {
        // A panic while holding the lock leaves the data usable.
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn end(&self, exit: Exit) {
        // The receiver lives until main returns.
        let _ = self.exit.send(exit);
    }

    fn current_session_id(&self) -> Option<BattleSessionId> {
        self.session()
            .spec
            .as_ref()
            .map(|s| s.battle_session_id.clone())
    }

    /// Ends the session once every player who joined has left for good.
    fn check_everyone_left(&self) {
        let s = self.session();
        if s.anyone_joined && s.connected.is_empty() && s.disconnected.is_empty() {
            drop(s);
            self.end(Exit::SessionOver("every player left"));
        }
    }
}

/// The SDK callbacks.
struct Handler(Arc<Game>);

impl Callbacks for Handler {
    async fn on_health_check(&self) -> bool {
        if self.0.hung.load(Ordering::SeqCst) {
            // Never answer: the agent counts a missed health check.
            std::future::pending::<()>().await;
        }
        !self.0.sick.load(Ordering::SeqCst)
    }

    async fn on_start_battle_session(&self, spec: BattleSessionSpec) {
        let game = &self.0;
        let id = spec.battle_session_id.clone();
        tracing::info!(battle_session_id = %id, players = spec.players.len(), "battle session assigned");
        {
            let mut s = game.session();
            if s.spec.is_some() {
                tracing::warn!(battle_session_id = %id, "already hosting a battle session; ignored");
                return;
            }
            s.spec = Some(spec);
        }
        let session_len = Duration::from_secs(game.args.session_secs);
        let timer = game.clone();
        tokio::spawn(async move {
            tokio::time::sleep(session_len).await;
            timer.end(Exit::SessionOver("session time is up"));
        });
        if game.args.no_activate {
            tracing::info!("--no-activate: not activating");
            return;
        }
        let game = game.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(game.args.activate_delay_ms)).await;
            match game.sdk.activate_battle_session(&id).await {
                Ok(()) => tracing::info!(battle_session_id = %id, "battle session activated"),
                Err(e) => tracing::error!(battle_session_id = %id, error = %e, "activation failed"),
            }
        });
    }

    async fn on_terminate_battle_session(&self, battle_session_id: BattleSessionId) {
        tracing::info!(%battle_session_id, "OnTerminateBattleSession received");
        if self.0.current_session_id().as_ref() == Some(&battle_session_id) {
            self.0.end(Exit::SessionOver(
                "battle session terminated by the platform",
            ));
        }
    }

    async fn on_battle_session_updated(&self, spec: BattleSessionSpec) {
        let mut s = self.0.session();
        if s.spec.as_ref().map(|c| &c.battle_session_id) == Some(&spec.battle_session_id) {
            tracing::info!(battle_session_id = %spec.battle_session_id, players = spec.players.len(), "OnBattleSessionUpdated received");
            s.spec = Some(spec);
        }
    }

    async fn on_player_battle_sessions_terminated(
        &self,
        battle_session_id: BattleSessionId,
        player_battle_session_ids: Vec<PlayerBattleSessionId>,
    ) {
        tracing::info!(%battle_session_id, players = ?player_battle_session_ids, "OnPlayerBattleSessionsTerminated received");
        let mut s = self.0.session();
        for id in &player_battle_session_ids {
            s.disconnected.remove(id);
        }
    }

    async fn on_battle_player_offline(
        &self,
        battle_session_id: BattleSessionId,
        player_id: respawn_sdk::PlayerId,
        _player_battle_session_id: PlayerBattleSessionId,
    ) {
        tracing::info!(%battle_session_id, %player_id, "OnBattlePlayerOffline received");
    }

    async fn on_battle_player_banned(
        &self,
        battle_session_id: BattleSessionId,
        player_id: respawn_sdk::PlayerId,
        _player_battle_session_id: PlayerBattleSessionId,
        reason: String,
    ) {
        tracing::info!(%battle_session_id, %player_id, %reason, "OnBattlePlayerBanned received");
    }

    async fn on_process_terminate(&self, reason: String) {
        tracing::warn!(%reason, "OnProcessTerminate received: process terminate requested");
        self.0.end(Exit::Terminated);
    }
}

/// Runs the sample DS with command-line `args` (the first is the program
/// name). This is what the `sample-ds` binary and `respawn sample-ds` run.
/// Like any command-line entry point, it exits the process after printing
/// `--help`, or a usage error (status 2).
pub fn run_with_args<I: IntoIterator<Item = String>>(args: I) -> anyhow::Result<()> {
    let args = Args::try_parse_from(args).unwrap_or_else(|e| e.exit());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let log_file = init_logging()?;

    let listener = TcpListener::bind(("0.0.0.0", args.port))
        .await
        .with_context(|| format!("cannot listen on port {}", args.port))?;
    let port = listener.local_addr()?.port();
    tracing::info!(port, "listening for game clients");

    let sdk = ServerSdk::from_env()?;
    let (exit_tx, mut exit_rx) = mpsc::unbounded_channel();
    let game = Arc::new(Game {
        sdk: sdk.clone(),
        args,
        session: Mutex::default(),
        sick: AtomicBool::new(false),
        hung: AtomicBool::new(false),
        exit: exit_tx,
    });
    let mut log_paths: Vec<String> = log_file.into_iter().collect();
    if let Some(dir) = &game.args.extra_log_dir {
        let path = dir.join(format!("{}.log", sdk.process_id()));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir:?}"))?;
        std::fs::write(&path, format!("sample-ds {} started\n", sdk.process_id()))
            .with_context(|| format!("cannot write {path:?}"))?;
        log_paths.push(path.to_string_lossy().into_owned());
    }
    sdk.process_ready(port, log_paths, Handler(game.clone()))
        .await
        .context("ProcessReady failed")?;
    tracing::info!(process_id = %sdk.process_id(), "process ready");

    tokio::spawn(accept_players(listener, game.clone()));

    let linger_secs = game.args.linger_secs;
    let exit = exit_rx.recv().await;
    match exit {
        Some(Exit::SessionOver(why)) => {
            tracing::info!(why, "battle session over; calling ProcessEnding");
            if let Err(e) = sdk.process_ending().await {
                tracing::error!(error = %e, "ProcessEnding failed");
            }
            if linger_secs > 0 {
                tracing::warn!(linger_secs, "lingering after ProcessEnding");
                tokio::time::sleep(Duration::from_secs(linger_secs)).await;
            }
        }
        Some(Exit::Terminated) | None => {}
    }
    sdk.close();
    tracing::info!("exiting");
    Ok(())
}

/// Logs to stdout and, if `RESPAWN_LOG_DIR` is set, to `sample-ds.log` in
/// it. Returns the log file's path, for ProcessReady's log_paths.
fn init_logging() -> anyhow::Result<Option<String>> {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    match std::env::var_os(respawn_sdk::ENV_LOG_DIR) {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {dir:?}"))?;
            let path = std::path::Path::new(&dir).join("sample-ds.log");
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot open {path:?}"))?;
            builder
                .with_writer(std::io::stdout.and(Arc::new(file)))
                .init();
            Ok(Some(path.to_string_lossy().into_owned()))
        }
        None => {
            builder.with_writer(std::io::stdout).init();
            Ok(None)
        }
    }
}

async fn accept_players(listener: TcpListener, game: Arc<Game>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let game = game.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_player(stream, &game).await {
                        tracing::debug!(%peer, error = %e, "player connection failed");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// What a connection's player did last.
enum Left {
    /// Still connected, or never joined.
    No,
    /// Left for good (LEAVE).
    Removed,
    /// Dropped, may come back (DISCONNECT).
    Disconnected,
}

/// One game client: one player.
async fn serve_player(stream: TcpStream, game: &Arc<Game>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut joined: Option<(BattleSessionId, PlayerBattleSessionId)> = None;
    let mut left = Left::No;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut read)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            if buf.len() > MAX_LINE {
                write.write_all(b"ERR line too long\n").await?;
            }
            break;
        }
        let line = String::from_utf8_lossy(&buf);
        let mut words = line.split_whitespace();
        let reply = match (words.next(), words.next()) {
            (None, _) => continue,
            (Some("JOIN"), Some(pbs)) => join(game, &mut joined, pbs).await,
            (Some("JOIN"), None) => "ERR usage: JOIN <player_battle_session_id>".to_owned(),
            (Some("LEAVE"), _) => {
                left = Left::Removed;
                "OK".to_owned()
            }
            (Some("DISCONNECT"), _) => {
                left = Left::Disconnected;
                "OK".to_owned()
            }
            (Some("SICK"), _) => {
                game.sick.store(true, Ordering::SeqCst);
                "OK".to_owned()
            }
            (Some("HANG"), _) => {
                game.hung.store(true, Ordering::SeqCst);
                "OK".to_owned()
            }
            (Some("END"), _) => {
                game.end(Exit::SessionOver("END requested"));
                "OK".to_owned()
            }
            (Some("VS"), Some(target)) => {
                // VS <vs> <path>: the DS invokes a virtual server through the SDK.
                let path = words.next().unwrap_or("/");
                match game
                    .sdk
                    .invoke_virtual_server(target, path, reqwest::Method::GET, &[], Vec::new())
                    .await
                {
                    Ok(r) => format!(
                        "VS {} {}",
                        r.status,
                        String::from_utf8_lossy(&r.body).trim().replace('\n', " ")
                    ),
                    Err(e) => format!("ERR {e}"),
                }
            }
            (Some(other), _) => format!("ERR unknown command {other:?}"),
        };
        if !matches!(left, Left::No) {
            // Report before answering, so a client that reads OK knows the
            // platform has been told.
            part(game, joined.take(), &left).await;
            write.write_all(b"OK\n").await?;
            return Ok(());
        }
        write.write_all(format!("{reply}\n").as_bytes()).await?;
    }
    // The connection closed without LEAVE: the player is gone.
    part(game, joined.take(), &Left::Removed).await;
    Ok(())
}

async fn join(
    game: &Arc<Game>,
    joined: &mut Option<(BattleSessionId, PlayerBattleSessionId)>,
    pbs: &str,
) -> String {
    if joined.is_some() {
        return "ERR already joined on this connection".to_owned();
    }
    let Some(bs) = game.current_session_id() else {
        return "ERR no battle session on this server".to_owned();
    };
    let pbs = match PlayerBattleSessionId::parse(pbs) {
        Ok(p) => p,
        Err(e) => return format!("ERR {e}"),
    };
    match game.sdk.accept_player_battle_session(&bs, &pbs).await {
        Ok(()) => {
            tracing::info!(player_battle_session_id = %pbs, "player accepted");
            let mut s = game.session();
            s.disconnected.remove(&pbs);
            s.connected.insert(pbs.clone());
            s.anyone_joined = true;
            drop(s);
            *joined = Some((bs, pbs));
            "OK".to_owned()
        }
        Err(e) => {
            tracing::info!(player_battle_session_id = %pbs, error = %e, "player rejected");
            format!("ERR {e}")
        }
    }
}

/// Reports a player leaving (for good, or disconnected).
async fn part(
    game: &Arc<Game>,
    joined: Option<(BattleSessionId, PlayerBattleSessionId)>,
    how: &Left,
) {
    let Some((bs, pbs)) = joined else { return };
    let result = match how {
        Left::Disconnected => game.sdk.disconnect_player_battle_session(&bs, &pbs).await,
        _ => game.sdk.remove_player_battle_session(&bs, &pbs).await,
    };
    if let Err(e) = result {
        tracing::warn!(player_battle_session_id = %pbs, error = %e, "could not report the player leaving");
    }
    {
        let mut s = game.session();
        s.connected.remove(&pbs);
        if matches!(how, Left::Disconnected) {
            s.disconnected.insert(pbs.clone());
        }
    }
    tracing::info!(player_battle_session_id = %pbs, "player left");
    game.check_everyone_left();
}
