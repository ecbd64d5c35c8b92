//! Server and agent as two `respawn` processes.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_agent_as_two_processes() -> anyhow::Result<()> {
    let _shared = super::ALONE.read().await;
    let dir = tempfile::tempdir()?;
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
fleet = "fleet-two"
[[title_regions]]
id = "tr-two"
title_id = "title-two"
secret_id = "sid-two"
secret_key = "{key}"
[[fleets]]
id = "fleet-two"
title_region = "tr-two"
launch_path = "{bin}"
args = ["sample-ds"]
processes_per_host = 1
"#,
        bin = respawn_bin().display()
    );
    let cfg_path = dir.path().join("respawn.toml");
    std::fs::write(&cfg_path, config)?;
    let spawn = |role: &str| -> anyhow::Result<Child> {
        Ok(Command::new(respawn_bin())
            .arg(role)
            .arg("--config")
            .arg(&cfg_path)
            .arg("--data-dir")
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?)
    };
    let mut server = spawn("server")?;
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let edge = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.split("HTTP edge: ").nth(1).map(|s| s.trim().to_string()))
        .ok_or_else(|| anyhow::anyhow!("server did not print its edge"))?;
    std::thread::spawn(move || for _ in lines {});
    struct Kill(Vec<Child>);
    impl Drop for Kill {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let agent = spawn("agent")?;
    let _guard = Kill(vec![server, agent]);
    let region = TitleRegion {
        id: TitleRegionId::new_unchecked("tr-two"),
        title_id: TitleId::new_unchecked("title-two"),
        name: String::new(),
        title_name: String::new(),
        secret_id: SecretId::new_unchecked("sid-two"),
        secret_key: key.into(),
    };
    let b = Backend::new(edge, &region);
    let pl = b.place("fleet-two", &["p1"]).await?;
    let v = b.wait_status(&pl, "FULFILLED", T).await?;
    assert_eq!(v["battle_session_status"], "ACTIVE");
    Ok(())
}
