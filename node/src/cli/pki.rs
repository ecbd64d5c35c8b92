//! `respawn ctl pki`: a cluster CA and the node and agent certificates it signs.

use super::PkiCmd;
use anyhow::bail;

pub fn pki(cmd: &PkiCmd) -> anyhow::Result<()> {
    use respawn_net::{CaBundle, PeerKind, Pki};
    match cmd {
        PkiCmd::Init { dir } => {
            let ca_dir = dir.join("ca");
            if ca_dir.join("ca.pem").exists() {
                bail!(
                    "{} already holds a CA; refusing to overwrite it",
                    ca_dir.display()
                );
            }
            Pki::generate_ca("respawn cluster CA")?.write_dir(&ca_dir)?;
            println!("CA written to {}", ca_dir.display());
        }
        PkiCmd::Issue {
            dir,
            node,
            agent,
            sans,
        } => {
            let ca = CaBundle::load_dir(&dir.join("ca"))?;
            let (kind, name, out) = match (node, agent) {
                (Some(id), _) => {
                    let name = respawn_net::transport::node_name(*id);
                    (PeerKind::Node, name.clone(), dir.join(name))
                }
                (None, Some(host)) => (
                    PeerKind::Agent,
                    host.clone(),
                    dir.join(format!("agent-{host}")),
                ),
                (None, None) => bail!("give --node ID or --agent HOST_ID"),
            };
            ca.issue(kind, &name, sans)?.write_dir(&out)?;
            println!("{kind} certificate '{name}' written to {}", out.display());
        }
    }
    Ok(())
}
