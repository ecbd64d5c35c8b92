//! `respawn ctl fleet` and `respawn ctl host`: fleets and hosts over the
//! admin API of any server node; answers are printed as JSON.

use super::{AdminFlags, VsFlags};
use anyhow::{bail, Context};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum FleetCmd {
    /// List the title region's fleets.
    List(VsFlags),
    /// Show one fleet: version, hosts, processes, sessions, free slots.
    Get {
        #[command(flatten)]
        flags: VsFlags,
        fleet_id: String,
    },
    /// Create or update a fleet from a JSON definition file (`-` = stdin).
    Put {
        #[command(flatten)]
        flags: VsFlags,
        fleet_id: String,
        /// JSON file with the definition (see docs/http-api.md).
        #[arg(long)]
        spec: PathBuf,
    },
    /// Delete a fleet (refused while sessions run on it, unless --force).
    Delete {
        #[command(flatten)]
        flags: VsFlags,
        fleet_id: String,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
pub enum HostCmd {
    /// List every host with its fleet, link, processes, sessions and state.
    List(AdminFlags),
    /// Drain a host: no new session; idle processes end, busy ones finish.
    Drain {
        #[command(flatten)]
        admin: AdminFlags,
        host_id: String,
    },
    /// End a host's drain.
    Undrain {
        #[command(flatten)]
        admin: AdminFlags,
        host_id: String,
    },
}

pub(super) async fn send(admin: &AdminFlags, req: reqwest::RequestBuilder) -> anyhow::Result<()> {
    let res = req.bearer_auth(&admin.token).send().await?;
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    if !text.is_empty() {
        let body: serde_json::Value =
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        println!("{}", serde_json::to_string_pretty(&body)?);
    }
    if !status.is_success() {
        bail!("the server answered {status}");
    }
    Ok(())
}

pub async fn fleet_ctl(cmd: &FleetCmd) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = |f: &VsFlags, rest: &str| {
        format!(
            "{}/admin/title_regions/{}/fleets{rest}",
            f.admin.server.trim_end_matches('/'),
            f.title_region
        )
    };
    let (flags, req) = match cmd {
        FleetCmd::List(f) => (f, client.get(url(f, ""))),
        FleetCmd::Get { flags, fleet_id } => {
            (flags, client.get(url(flags, &format!("/{fleet_id}"))))
        }
        FleetCmd::Put {
            flags,
            fleet_id,
            spec,
        } => {
            let text = if spec.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(spec)
                    .with_context(|| format!("reading {}", spec.display()))?
            };
            let body: serde_json::Value =
                serde_json::from_str(&text).context("the definition file is not JSON")?;
            (
                flags,
                client.put(url(flags, &format!("/{fleet_id}"))).json(&body),
            )
        }
        FleetCmd::Delete {
            flags,
            fleet_id,
            force,
        } => (
            flags,
            client.delete(url(flags, &format!("/{fleet_id}?force={force}"))),
        ),
    };
    send(&flags.admin, req).await
}

pub async fn host_ctl(cmd: &HostCmd) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let base = |a: &AdminFlags| format!("{}/admin/hosts", a.server.trim_end_matches('/'));
    let (admin, req) = match cmd {
        HostCmd::List(a) => (a, client.get(base(a))),
        HostCmd::Drain { admin, host_id } => (
            admin,
            client.post(format!("{}/{host_id}/drain", base(admin))),
        ),
        HostCmd::Undrain { admin, host_id } => (
            admin,
            client.post(format!("{}/{host_id}/undrain", base(admin))),
        ),
    };
    send(admin, req).await
}
