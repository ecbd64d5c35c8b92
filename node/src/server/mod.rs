//! A server node's parts around its [`Cluster`] handle: the agent links it
//! holds and the virtual-server hub ([`ServerCtx`]), how it answers the
//! other nodes ([`inbound`]), how it reaches any agent ([`gateway`]), the
//! actors it runs while it leads ([`leadership`]), the removal of records
//! past their retention window ([`retention`]) and their VS ports
//! ([`vs_ports`]), and the quorum [`watchdog`].

pub mod gateway;
pub mod inbound;
pub mod leadership;
pub mod retention;
pub mod vs_ports;
pub mod watchdog;

use crate::agent_links::AgentLinks;
use crate::cluster::Cluster;
use crate::vs_hub::VsHub;
use gateway::ClusterGateway;
use std::sync::Arc;

/// What a server node's edge and actors share: the cluster handle, the
/// agent links this node holds and the virtual-server hub.
#[derive(Clone)]
pub struct ServerCtx {
    pub cluster: Cluster,
    pub links: Arc<AgentLinks>,
    /// Virtual servers: proxy, access logs, load board.
    pub vs: Arc<VsHub>,
}

impl ServerCtx {
    /// The way to reach any agent: this node's link, else the node that holds it.
    pub fn gateway(&self) -> ClusterGateway {
        ClusterGateway {
            cluster: self.cluster.clone(),
            links: self.links.clone(),
        }
    }
}
