//! `respawn ctl fleet` and `respawn ctl host`: fleets and hosts over the
//! admin API of any server node; answers are printed as JSON.

use super::ctl::{read_json, region_url, send};
use super::{AdminFlags, VsFlags};
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
    /// Set the fleet's desired process count by hand (within its min and
    /// max; it overrides the buffer), or clear it with --clear.
    Desired {
        #[command(flatten)]
        flags: VsFlags,
        fleet_id: String,
        /// Processes the fleet should run.
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        count: Option<u32>,
        /// Clear the count set by hand: the scaling policy applies again.
        #[arg(long)]
        clear: bool,
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

pub async fn fleet_ctl(cmd: &FleetCmd) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = |f: &VsFlags, rest: &str| region_url(f, &format!("fleets{rest}"));
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
            let body = read_json(spec, "definition")?;
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
        FleetCmd::Desired {
            flags,
            fleet_id,
            count,
            clear,
        } => {
            let at = url(flags, &format!("/{fleet_id}/desired"));
            match (count, clear) {
                (Some(n), false) => (
                    flags,
                    client
                        .put(at)
                        .json(&serde_json::json!({ "desired_processes": n })),
                ),
                // clap requires one of them and refuses both.
                _ => (flags, client.delete(at)),
            }
        }
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
