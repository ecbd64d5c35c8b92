//! The actors' [`AgentGateway`] on a server node ([`ClusterGateway`]): this
//! node's link to the agent, else the node that holds it (the replicated
//! `host_links` says which).

use crate::agent_links::AgentLinks;
use crate::cluster::wire::{ClusterMsg, ClusterReply};
use crate::cluster::Cluster;
use futures::future::BoxFuture;
use respawn_actors::{AgentGateway, GatewayError};
use respawn_types::agent::{AgentReply, ServerToAgent};
use respawn_types::HostId;
use std::sync::Arc;

/// The actors' [`AgentGateway`]: local link, else the node that holds it.
#[derive(Clone)]
pub struct ClusterGateway {
    pub cluster: Cluster,
    pub links: Arc<AgentLinks>,
}

impl AgentGateway for ClusterGateway {
    fn send(
        &self,
        host: &HostId,
        command: ServerToAgent,
    ) -> BoxFuture<'static, Result<AgentReply, GatewayError>> {
        let c = self.cluster.clone();
        let links = self.links.clone();
        let host = host.clone();
        Box::pin(async move {
            if links.is_connected(&host) {
                return links.send(&host, command).await;
            }
            let holder = c.consensus.read(|s| s.host_links.get(&host).copied());
            let Some(node) = holder.filter(|n| *n != c.node_id()) else {
                return Err(GatewayError::NotConnected(host));
            };
            match c
                .ask_node(
                    node,
                    &ClusterMsg::ToAgent {
                        host: host.clone(),
                        command,
                    },
                )
                .await
            {
                Ok(ClusterReply::Agent(r)) => Ok(r),
                Ok(ClusterReply::Err(e)) => Err(GatewayError::Link(host, format!("{e:?}"))),
                Ok(other) => Err(GatewayError::Link(
                    host,
                    format!("unexpected reply {other:?}"),
                )),
                Err(e) => Err(GatewayError::Link(host, e.to_string())),
            }
        })
    }

    fn is_connected(&self, host: &HostId) -> bool {
        let c = &self.cluster;
        self.links.is_connected(host)
            || c.consensus
                .read(|s| s.host_links.get(host).is_some_and(|n| *n != c.node_id()))
    }
}
