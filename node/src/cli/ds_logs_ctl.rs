//! `respawn ctl ds-logs`: the logs agents keep of DS processes (stdout,
//! stderr, the `log_paths` files collected when a process ended), over the
//! admin API of any server node.

use super::VsFlags;
use anyhow::bail;
use clap::Subcommand;
use std::io::Write;

#[derive(Subcommand)]
pub enum DsLogsCmd {
    /// List the log files of a DS process, or of the process that hosted a battle session.
    List {
        #[command(flatten)]
        flags: VsFlags,
        /// The process id.
        #[arg(
            long,
            conflicts_with = "battle_session",
            required_unless_present = "battle_session"
        )]
        process: Option<String>,
        /// A battle session id: the process that hosted it.
        #[arg(long)]
        battle_session: Option<String>,
    },
    /// Print one log file of a DS process (name as `list` shows it) to stdout.
    Get {
        #[command(flatten)]
        flags: VsFlags,
        /// The process id.
        #[arg(long)]
        process: String,
        /// The file name, e.g. stdout.log or collected/0-server.log.
        name: String,
    },
}

pub async fn ds_logs_ctl(cmd: &DsLogsCmd) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let base = |f: &VsFlags| {
        format!(
            "{}/admin/title_regions/{}",
            f.admin.server.trim_end_matches('/'),
            f.title_region
        )
    };
    let (flags, url, raw) = match cmd {
        DsLogsCmd::List {
            flags,
            process: Some(p),
            ..
        } => (flags, format!("{}/processes/{p}/logs", base(flags)), false),
        DsLogsCmd::List {
            flags,
            battle_session,
            ..
        } => (
            flags,
            format!(
                "{}/battle_sessions/{}/logs",
                base(flags),
                battle_session.as_deref().unwrap_or_default()
            ),
            false,
        ),
        DsLogsCmd::Get {
            flags,
            process,
            name,
        } => (
            flags,
            format!("{}/processes/{process}/logs/{name}", base(flags)),
            true,
        ),
    };
    let res = client
        .get(url)
        .bearer_auth(&flags.admin.token)
        .send()
        .await?;
    let status = res.status();
    let bytes = res.bytes().await?;
    if raw && status.is_success() {
        std::io::stdout().write_all(&bytes)?;
    } else {
        let body: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        println!("{}", serde_json::to_string_pretty(&body)?);
    }
    if !status.is_success() {
        bail!("the server answered {status}");
    }
    Ok(())
}
