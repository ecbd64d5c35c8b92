//! `respawn ctl storage`: VS storages over the admin API of any server
//! node; answers are printed as JSON.

use super::fleet_ctl::send;
use super::VsFlags;
use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum StorageCmd {
    /// List the title region's VS storages.
    List(VsFlags),
    /// Show one storage, the virtual servers bound to it and its variable.
    Get {
        #[command(flatten)]
        flags: VsFlags,
        name: String,
    },
    /// Create or change a storage from a JSON spec file (`-` = stdin).
    Put {
        #[command(flatten)]
        flags: VsFlags,
        name: String,
        /// JSON file with the spec, e.g. {"kind":"managed_redis"} (see docs/virtual-servers.md).
        #[arg(long)]
        spec: PathBuf,
    },
    /// Delete a storage (refused while a virtual server names it, unless --force).
    Delete {
        #[command(flatten)]
        flags: VsFlags,
        name: String,
        #[arg(long)]
        force: bool,
    },
}

pub async fn storage_ctl(cmd: &StorageCmd) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = |f: &VsFlags, rest: &str| {
        format!(
            "{}/admin/title_regions/{}/storages{rest}",
            f.admin.server.trim_end_matches('/'),
            f.title_region
        )
    };
    let (flags, req) = match cmd {
        StorageCmd::List(f) => (f, client.get(url(f, ""))),
        StorageCmd::Get { flags, name } => (flags, client.get(url(flags, &format!("/{name}")))),
        StorageCmd::Put { flags, name, spec } => {
            let text = if spec.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(spec)
                    .with_context(|| format!("reading {}", spec.display()))?
            };
            let body: serde_json::Value =
                serde_json::from_str(&text).context("the spec file is not JSON")?;
            (
                flags,
                client.put(url(flags, &format!("/{name}"))).json(&body),
            )
        }
        StorageCmd::Delete { flags, name, force } => (
            flags,
            client.delete(url(flags, &format!("/{name}?force={force}"))),
        ),
    };
    send(&flags.admin, req).await
}
