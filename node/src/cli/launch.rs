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

/// Warns about each `RESPAWN_*` variable that is neither a configuration
/// key nor read by `respawn ctl`: it is ignored, not fatal.
pub fn warn_unknown_env() {
    for name in respawn_config::unknown_env_vars(std::env::vars()) {
        tracing::warn!(
            variable = %name,
            "ignoring environment variable {name}: it names no configuration key \
             (keys are RESPAWN_<SECTION>__<KEY>, e.g. RESPAWN_SERVER__HTTP_ADDR)"
        );
    }
}

/// Prints each title region's credentials and writes them for `source`-ing
/// in a shell: `<data_dir>/credentials.<title region>.env` for every title
/// region, and `<data_dir>/credentials.env` with the first one's (the
/// default) and every region's keys listed.
pub fn print_credentials(node: &ServerNode, cfg: &Config) -> anyhow::Result<()> {
    let data_dir = &cfg.data_dir;
    println!("\nRespawn is up. HTTP edge: http://{}", node.http_addr);
    // The configured regions first, in the file's order; then any others.
    let mut regions = node.title_regions();
    regions.sort_by_key(|r| {
        cfg.title_regions
            .iter()
            .position(|t| t.id == r.id.as_str())
            .unwrap_or(usize::MAX)
    });
    for r in &regions {
        println!("  title region {}  (title {})", r.id, r.title_id);
        println!("    TitleId:       {}", r.title_id);
        println!("    TitleRegionId: {}", r.id);
        println!("    SecretId:      {}", r.secret_id);
        println!("    SecretKey:     {}", r.secret_key);
    }
    println!(
        "  admin token (for /admin/* and `respawn ctl cluster`): {}",
        node.admin_token
    );
    let edge = format!("http://{}", node.http_addr);
    for (name, text) in credentials_files(&edge, &node.admin_token, &regions, data_dir) {
        let path = data_dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "  (also written to {}; `source` it, then `respawn ctl ticket` prints a ServerTicket;\n   \
         each title region's keys are in credentials.<title region>.env: `source` one to use that region)\n",
        data_dir.join("credentials.env").display()
    );
    Ok(())
}

/// The credentials files (name, text): one per title region, and
/// `credentials.env` exporting the first region's keys with every region's
/// listed and how to switch.
pub fn credentials_files(
    edge: &str,
    admin_token: &str,
    regions: &[respawn_types::TitleRegion],
    data_dir: &Path,
) -> Vec<(String, String)> {
    let common = format!("export RESPAWN_EDGE={edge}\nexport RESPAWN_ADMIN_TOKEN={admin_token}\n");
    let keys = |r: &respawn_types::TitleRegion| {
        format!(
            "export RESPAWN_TITLE_ID={}\nexport RESPAWN_TITLE_REGION_ID={}\nexport RESPAWN_SECRET_ID={}\nexport RESPAWN_SECRET_KEY={}\n",
            r.title_id, r.id, r.secret_id, r.secret_key
        )
    };
    let mut files = Vec::new();
    let mut main = format!("# Respawn credentials. Title regions: {}.\n", regions.len());
    for r in regions {
        let file = format!("credentials.{}.env", r.id);
        main.push_str(&format!(
            "# {} (title {}): SecretId {}; use it with: source {}\n",
            r.id,
            r.title_id,
            r.secret_id,
            data_dir.join(&file).display()
        ));
        files.push((file, format!("{common}{}", keys(r))));
    }
    main.push_str(&common);
    if let Some(first) = regions.first() {
        main.push_str(&keys(first));
    }
    files.push(("credentials.env".to_string(), main));
    files
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

/// After the first SIGTERM or Ctrl-C of `respawn agent`: drain the host
/// (no new session, idle processes end, busy ones finish theirs) and return
/// when no DS process is left or, past the deadline, once the sessions still
/// running were ended. A second SIGTERM or Ctrl-C returns at once (the
/// caller then kills what is left).
pub async fn drain_then_exit(agent: &respawn::AgentNode, deadline_secs: u64) {
    tracing::info!(
        deadline_secs,
        "draining this host before exiting; send SIGTERM or Ctrl-C again to exit at once"
    );
    tokio::select! {
        outcome = agent.drain() => tracing::info!(?outcome, "drain over; exiting"),
        _ = wait_for_signal() => tracing::warn!("second signal: exiting without waiting for the drain"),
    }
}
