//! What starting a server node or an agent from the command line needs:
//! configuration overrides from flags, tracing, the TLS identities, the
//! credentials printed at start-up, and waiting for a stop signal.

use super::Cli;
use anyhow::Context;
use respawn::ServerNode;
use respawn_config::Config;
use std::collections::BTreeMap;
use std::path::Path;

pub fn overrides(pairs: &[(&str, Option<toml::Value>)]) -> BTreeMap<String, toml::Value> {
    pairs
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
        .collect()
}

pub fn s<T: ToString>(v: Option<T>) -> Option<toml::Value> {
    v.map(|v| toml::Value::String(v.to_string()))
}

pub fn common(cli: &Cli) -> Vec<(&'static str, Option<toml::Value>)> {
    vec![
        ("data_dir", s(cli.data_dir.as_ref().map(|p| p.display()))),
        ("log", s(cli.log.clone())),
    ]
}

pub fn init_tracing(filter: &str) {
    // openraft narrates every election at INFO; keep it to warnings unless asked.
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| {
        let spec = if filter.contains("openraft") {
            filter.to_string()
        } else {
            format!("{filter},openraft=warn")
        };
        tracing_subscriber::EnvFilter::new(spec)
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// This machine's host name (`HOSTNAME`, else /etc/hostname, else empty).
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// The server's identity: from `server.pki_dir`, else the dev PKI.
pub fn server_identity(cfg: &Config) -> anyhow::Result<respawn_net::Identity> {
    Ok(match &cfg.server.pki_dir {
        Some(dir) => respawn_net::Identity::load_dir(dir)
            .with_context(|| format!("loading {}", dir.display()))?,
        None => respawn_net::ensure_dev_pki(&cfg.data_dir)?.0,
    })
}

/// The agent's identity: from `agent.pki_dir`, else the dev PKI.
pub fn agent_identity(cfg: &Config) -> anyhow::Result<respawn_net::Identity> {
    Ok(match &cfg.agent.pki_dir {
        Some(dir) => respawn_net::Identity::load_dir(dir)
            .with_context(|| format!("loading {}", dir.display()))?,
        None => respawn_net::ensure_dev_pki(&cfg.data_dir)?.1,
    })
}

/// Prints each title region's credentials and writes them to
/// `<data_dir>/credentials.env` for `source`-ing in a shell.
pub fn print_credentials(node: &ServerNode, data_dir: &Path) -> anyhow::Result<()> {
    let mut env = String::new();
    println!("\nRespawn is up. HTTP edge: http://{}", node.http_addr);
    for r in node.title_regions() {
        println!("  title region {}  (title {})", r.id, r.title_id);
        println!("    TitleId:       {}", r.title_id);
        println!("    TitleRegionId: {}", r.id);
        println!("    SecretId:      {}", r.secret_id);
        println!("    SecretKey:     {}", r.secret_key);
        env = format!(
            "export RESPAWN_EDGE=http://{}\nexport RESPAWN_TITLE_ID={}\nexport RESPAWN_TITLE_REGION_ID={}\nexport RESPAWN_SECRET_ID={}\nexport RESPAWN_SECRET_KEY={}\nexport RESPAWN_ADMIN_TOKEN={}\n",
            node.http_addr, r.title_id, r.id, r.secret_id, r.secret_key, node.admin_token
        );
    }
    println!(
        "  admin token (for /admin/* and `respawn ctl cluster`): {}",
        node.admin_token
    );
    let path = data_dir.join("credentials.env");
    std::fs::write(&path, env).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "  (also written to {}; `source` it, then `respawn ctl ticket` prints a ServerTicket)\n",
        path.display()
    );
    Ok(())
}

pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
