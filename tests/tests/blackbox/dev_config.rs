//! `respawn dev` with a user's configuration file and a shell that has
//! sourced `credentials.env`: the file adds to the dev defaults, stray
//! `RESPAWN_*` variables only warn, and every title region's keys are
//! written and usable.

use super::*;
use std::sync::{Arc, Mutex};

/// The TOML example of docs/virtual-servers.md §16, without its `[agent]`
/// table (its intranet address is a Docker bridge this machine may lack).
fn section_16_file() -> String {
    let doc = include_str!("../../../docs/virtual-servers.md");
    let section = doc
        .split("## 16. Virtual servers in the configuration file")
        .nth(1)
        .unwrap();
    let toml = section
        .split("```toml\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let mut out = String::new();
    let mut in_agent = false;
    for line in toml.lines() {
        if line.starts_with('[') {
            in_agent = line.trim() == "[agent]";
        }
        if !in_agent {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_with_a_file_and_sourced_credentials_starts_and_writes_every_region(
) -> anyhow::Result<()> {
    let _shared = super::ALONE.read().await;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("respawn.toml");
    std::fs::write(&config, section_16_file())?;
    let data = dir.path().join("data");
    let mut child = Command::new(respawn_bin())
        .args([
            "dev",
            "--http-addr",
            "127.0.0.1:0",
            "--quic-addr",
            "127.0.0.1:0",
        ])
        .args(["--processes", "1", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        // What `source .respawn/credentials.env` leaves in a shell, and a stray variable.
        .env("RESPAWN_EDGE", "http://127.0.0.1:1")
        .env("RESPAWN_ADMIN_TOKEN", "an-old-admin-token-0123")
        .env("RESPAWN_TITLE_ID", "title-dev")
        .env("RESPAWN_TITLE_REGION_ID", "tr-dev")
        .env("RESPAWN_SECRET_ID", "sid-old")
        .env("RESPAWN_SECRET_KEY", "an-old-secret-key-0123")
        .env("RESPAWN_NOT_A_KEY", "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let err = Arc::new(Mutex::new(String::new()));
    let sink = err.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut e = sink.lock().unwrap();
            e.push_str(&line);
            e.push('\n');
        }
    });
    let mut edge = None;
    let mut up = false;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line?;
        if let Some(addr) = line.split("HTTP edge: ").nth(1) {
            edge = Some(addr.trim().to_string());
        }
        if line.contains("also written to") {
            up = true;
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let guard = Killer(child);
    if !up {
        drop(guard);
        anyhow::bail!("respawn dev did not start: {}", err.lock().unwrap());
    }
    // Printed as `http://host:port`.
    let edge = edge.expect("edge address");
    // Both title regions: the dev one (default) and the file's.
    let main = std::fs::read_to_string(data.join("credentials.env"))?;
    assert!(
        main.contains("export RESPAWN_TITLE_REGION_ID=tr-dev"),
        "{main}"
    );
    assert!(main.contains("tr-eu"), "{main}");
    assert!(main.contains("credentials.tr-eu.env"), "{main}");
    let eu = data.join("credentials.tr-eu.env");
    let eu_text = std::fs::read_to_string(&eu)?;
    assert!(
        eu_text.contains("export RESPAWN_TITLE_REGION_ID=tr-eu"),
        "{eu_text}"
    );
    assert!(
        eu_text.contains("export RESPAWN_TITLE_ID=mygame"),
        "{eu_text}"
    );
    // Picking tr-eu in a shell, as the README says, gives working credentials.
    let script = format!(
        ". '{}'; '{}' ctl ticket; echo \"$RESPAWN_TITLE_REGION_ID $RESPAWN_SECRET_ID $RESPAWN_EDGE\"",
        eu.display(),
        respawn_bin().display()
    );
    let out = Command::new("sh").arg("-c").arg(&script).output()?;
    let text = String::from_utf8(out.stdout)?;
    let mut it = text.lines();
    let ticket = it.next().unwrap_or_default().to_string();
    let vars: Vec<&str> = it.next().unwrap_or_default().split(' ').collect();
    assert_eq!(vars[0], "tr-eu", "{text}");
    assert_eq!(vars[2], edge, "{text}");
    let res = reqwest::Client::new()
        .post(format!("{edge}/dsm/request_battle_session_id"))
        .header("TitleId", "mygame")
        .header("TitleRegionId", "tr-eu")
        .header("SecretId", vars[1])
        .header("ServerTicket", ticket)
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await?;
    assert_eq!(res.status(), 200, "{}", res.text().await?);
    drop(guard);
    // The stray variable was named in a warning (the variables of
    // credentials.env were not), and nothing stopped start-up.
    let err = err.lock().unwrap().clone();
    assert!(err.contains("RESPAWN_NOT_A_KEY"), "{err}");
    assert!(!err.contains("variable RESPAWN_ADMIN_TOKEN"), "{err}");
    Ok(())
}

/// Kills the child when dropped (also when the test fails).
struct Killer(std::process::Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
