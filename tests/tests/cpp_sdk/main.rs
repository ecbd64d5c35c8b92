//! The C++ Server SDK: its unit tests (`make -C sdk/cpp test`), and the SDK
//! under the real agent: builds the C++ sample DS
//! (`examples/cpp-ds`, on `sdk/cpp`) with `make` and the system `g++`, runs
//! it as the fleet of `respawn server` + `respawn agent` started from a
//! configuration file, and drives one battle session over the HTTP edge:
//! placement FULFILLED, a player accepted and removed, the session ended
//! with ProcessEnding, the process replaced by a new one; and the DS
//! invoking a virtual server through the SDK.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{bail, ensure, Context};
use respawn_tests::*;
use respawn_types::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const FLEET: &str = "fleet-cpp";

/// Runs `make -C <root>/<dir> BUILD=target/<profile>/<build> <goals>`
/// (out of the source tree, kept between runs); returns the build dir.
/// Fails (never skips) when g++ or make is missing.
fn make(dir: &str, build: &str, goals: &[&str]) -> anyhow::Result<PathBuf> {
    for tool in ["g++", "make"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ensure!(
            found,
            "`{tool}` is missing: the C++ SDK tests need g++ (C++17) and make \
             (Debian: apt-get install -y g++ make)"
        );
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let build = respawn_bin().parent().context("target dir")?.join(build);
    let out = Command::new("make")
        .arg("-C")
        .arg(&src)
        .arg(format!("BUILD={}", build.display()))
        .args(goals)
        .output()?;
    ensure!(
        out.status.success(),
        "make -C {} {goals:?} failed:\n{}\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(build)
}

/// Stops the children when the test ends, however it ends: SIGTERM, so the
/// agent shuts down and stops the processes it runs (the VS instance is
/// not its child process's child to kill), then SIGKILL after a deadline.
struct Kill(Vec<Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        // The agent (started last) first, while the server still answers it.
        for c in self.0.iter_mut().rev() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let end = std::time::Instant::now() + Duration::from_secs(15);
            while matches!(c.try_wait(), Ok(None)) && std::time::Instant::now() < end {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `respawn server` and `respawn agent` on `dir` with a fleet
/// launching `ds`; returns the children and a backend for the edge.
fn start(dir: &Path, ds: &Path) -> anyhow::Result<(Kill, Backend)> {
    let quic_port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let key = "0123456789abcdef0123456789abcdef";
    let config = format!(
        r#"
[server]
quic_addr = "127.0.0.1:{quic_port}"
http_addr = "127.0.0.1:0"
[agent]
server_addr = "127.0.0.1:{quic_port}"
fleet = "{FLEET}"
public_ip = "127.0.0.1"
[[title_regions]]
id = "tr-cpp"
title_id = "title-cpp"
secret_id = "sid-cpp"
secret_key = "{key}"
[[fleets]]
id = "{FLEET}"
title_region = "tr-cpp"
mode = "simple"
launch_path = "{ds}"
args = ["--session-secs", "300"]
processes_per_host = 1
health_check_interval_secs = 1
[[virtual_servers]]
title_region = "tr-cpp"
name = "vs-hello"
[virtual_servers.spec]
source = {{ process = {{ command = "python3" }} }}
args = ["{vs}"]
listen_port = 8080
cpu_millicores = 1000
memory_mb = 256
"#,
        ds = ds.display(),
        vs = python_vs_script().display()
    );
    let cfg_path = dir.join("respawn.toml");
    std::fs::write(&cfg_path, config)?;
    let spawn = |role: &str| -> anyhow::Result<Child> {
        Ok(Command::new(respawn_bin())
            .arg(role)
            .arg("--config")
            .arg(&cfg_path)
            .arg("--data-dir")
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?)
    };
    let mut server = spawn("server")?;
    let mut lines = BufReader::new(server.stdout.take().context("stdout")?).lines();
    let mut kill = Kill(vec![server]);
    let edge = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.split("HTTP edge: ").nth(1).map(|s| s.trim().to_string()))
        .context("server did not print its edge")?;
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    kill.0.push(spawn("agent")?);
    let region = TitleRegion {
        id: TitleRegionId::new_unchecked("tr-cpp"),
        title_id: TitleId::new_unchecked("title-cpp"),
        name: String::new(),
        title_name: String::new(),
        secret_id: SecretId::new_unchecked("sid-cpp"),
        secret_key: key.into(),
    };
    Ok((kill, Backend::new(edge, &region)))
}

/// The player battle session `pbs` as QueryPlayerBattleSessions shows it.
async fn query_pbs(b: &Backend, player: &str, pbs: &str) -> Option<Value> {
    let v = b
        .ok(
            "/dsm/query_player_battle_sessions",
            json!({ "player_id": player }),
        )
        .await
        .ok()?;
    v["player_battle_sessions"]
        .as_array()?
        .iter()
        .find(|p| p["player_battle_session_id"] == pbs)
        .cloned()
}

/// Connects to the DS of a FULFILLED placement and asks its process id.
async fn connect(placement: &Value) -> anyhow::Result<(GameClient, String)> {
    let port = placement["port"].as_u64().context("port")? as u16;
    let mut client = GameClient::connect("127.0.0.1", port).await?;
    let who = client.say("WHO").await?;
    let process = who
        .strip_prefix("OK ")
        .with_context(|| format!("WHO answered {who:?}"))?
        .to_string();
    ensure!(process.starts_with("proc-"), "WHO answered {who:?}");
    Ok((client, process))
}

/// The C++ DS's own log of process `process`, under the agent's data dir.
fn ds_log(dir: &Path, process: &str) -> anyhow::Result<String> {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n == process)
                    && path.join("cpp-ds.log").exists()
                {
                    return Ok(std::fs::read_to_string(path.join("cpp-ds.log"))?);
                }
                pending.push(path);
            }
        }
    }
    bail!("no cpp-ds.log of {process} under {}", dir.display())
}

/// The SDK's own unit tests (`sdk/cpp/test/unit_test.cpp`): JSON, endpoint
/// parsing, errors as values without an agent.
#[test]
fn cpp_sdk_unit_tests_pass() -> anyhow::Result<()> {
    make("sdk/cpp", "cpp-sdk", &["test"])?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpp_sample_ds_hosts_a_battle_session_under_the_real_agent() -> anyhow::Result<()> {
    let ds = make("examples/cpp-ds", "cpp-ds", &[])?.join("cpp-ds");
    let dir = tempfile::tempdir()?;
    let (_children, b) = start(dir.path(), &ds)?;

    // Placement FULFILLED: the DS became ready, got OnStartBattleSession
    // and activated the session.
    let pl = b.place(FLEET, &["alice"]).await?;
    let v = b.wait_status(&pl, "FULFILLED", T).await?;
    assert_eq!(v["battle_session_status"], "ACTIVE", "{v}");
    let pbs = v["players"][0]["player_battle_session_id"]
        .as_str()
        .context("player_battle_session_id")?
        .to_string();
    let (mut alice, first) = connect(&v).await?;

    // Health checks (every second) reach OnHealthCheck on the SDK's event
    // thread while the session runs.
    wait_for("a health check of the C++ DS", T, || async {
        ds_log(dir.path(), &first)
            .ok()?
            .contains("first health check")
            .then_some(())
    })
    .await?;

    // An unknown reservation is refused with the agent's error code.
    let (mut stranger, _) = connect(&v).await?;
    let refused = stranger.say("JOIN pbs-unknown").await?;
    assert!(refused.starts_with("ERR 404 not_found: "), "{refused}");
    drop(stranger);

    // The player is accepted: ACTIVE.
    assert_eq!(alice.say(&format!("JOIN {pbs}")).await?, "OK");
    let p = query_pbs(&b, "alice", &pbs)
        .await
        .context("alice's player battle session")?;
    assert_eq!(p["status"], "ACTIVE", "{p}");

    // The DS calls a virtual server through the SDK (InvokeVirtualServer):
    // each attempt on a connection of its own, until the VS instance runs.
    let body = wait_for("the DS to invoke vs-hello", T, || async {
        let (mut c, _) = connect(&v).await.ok()?;
        let reply = c.say("VS vs-hello /hello?from=cpp").await.ok()?;
        reply.strip_prefix("VS 200 ").map(str::to_string)
    })
    .await?;
    let hello: Value = serde_json::from_str(&body)?;
    assert_eq!(hello["invoker"], "backend", "{hello}");
    assert_eq!(hello["query"], "from=cpp", "{hello}");

    // The player leaves (the connection closes): removed, COMPLETED; every
    // player has left, so the DS ends the session with ProcessEnding.
    drop(alice);
    wait_for("alice's reservation COMPLETED", T, || async {
        let v = b.describe(&pl).await.ok()?;
        (v["players"][0]["status"] == "COMPLETED").then_some(())
    })
    .await?;
    assert!(query_pbs(&b, "alice", &pbs).await.is_none());
    wait_for("the battle session TERMINATED", T, || async {
        let v = b.describe(&pl).await.ok()?;
        (v["battle_session_status"] == "TERMINATED").then_some(())
    })
    .await?;

    // The process is replaced: a new one becomes ready and hosts the next
    // session (one process per host, one session per process lifetime).
    let pl2 = b.place(FLEET, &["bob"]).await?;
    let v2 = b.wait_status(&pl2, "FULFILLED", T).await?;
    assert_eq!(v2["battle_session_status"], "ACTIVE", "{v2}");
    let (_bob, second) = connect(&v2).await?;
    assert_ne!(first, second, "the session should run on a new process");

    // The first process ended through ProcessEnding, and no health answer
    // failed.
    let log = ds_log(dir.path(), &first)?;
    assert!(log.contains("process ending"), "{log}");
    assert!(!log.contains("health answer failed"), "{log}");
    assert!(!log.contains("ProcessEnding failed"), "{log}");
    Ok(())
}
