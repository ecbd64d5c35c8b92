//! `respawn ctl storage`: VS storages over the admin API of any server
//! node; answers are printed as JSON.

use super::ctl::{read_json, region_url, send};
use super::VsFlags;
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
    let url = |f: &VsFlags, rest: &str| region_url(f, &format!("storages{rest}"));
    let (flags, req) = match cmd {
        StorageCmd::List(f) => (f, client.get(url(f, ""))),
        StorageCmd::Get { flags, name } => (flags, client.get(url(flags, &format!("/{name}")))),
        StorageCmd::Put { flags, name, spec } => {
            let body = read_json(spec, "spec")?;
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
