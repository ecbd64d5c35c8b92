//! How a server node answers the others ([`NodeHandler`]): Raft RPCs,
//! forwarded proposals and reads, commands for the agents linked to this
//! node, edge load reports, a stopping leader's handover and membership
//! changes.

use crate::agent_links::AgentLinks;
use crate::cluster::handover::stand_for_election;
use crate::cluster::wire::{decode, encode, ClusterMsg, ClusterReply, RemoteError};
use crate::cluster::Cluster;
use crate::vs_hub::LoadBoard;
use bytes::Bytes;
use futures::future::BoxFuture;
use respawn_net::transport::{Handler, Service};
use respawn_state::Request;
use respawn_types::NodeId;
use std::sync::Arc;

/// Answers other nodes.
pub struct NodeHandler {
    pub cluster: Cluster,
    /// The agents whose links this node holds (for [`ClusterMsg::ToAgent`]).
    pub links: Arc<AgentLinks>,
    /// Where the followers' edge load goes (for [`ClusterMsg::VsLoad`]).
    pub load: Arc<LoadBoard>,
}

impl Handler for NodeHandler {
    fn handle(&self, _from: NodeId, service: Service, payload: Bytes) -> BoxFuture<'static, Bytes> {
        let cluster = self.cluster.clone();
        let links = self.links.clone();
        let load = self.load.clone();
        Box::pin(async move {
            match service {
                Service::Raft => cluster.consensus.handle_raft(payload).await,
                Service::Cluster => {
                    let reply = match decode::<ClusterMsg>(&payload) {
                        None => ClusterReply::Err(RemoteError::Unavailable(
                            "undecodable request".into(),
                        )),
                        Some(msg) => serve(&cluster, &links, &load, msg).await,
                    };
                    encode(&reply)
                }
            }
        })
    }
}

async fn serve(
    cluster: &Cluster,
    links: &AgentLinks,
    load: &LoadBoard,
    msg: ClusterMsg,
) -> ClusterReply {
    let c = &cluster.consensus;
    match msg {
        // Local only: a forwarded proposal is never forwarded again.
        ClusterMsg::Propose(command) => match c
            .propose_request(Request {
                at: respawn_types::now_millis(),
                command,
            })
            .await
        {
            Ok(done) => ClusterReply::Applied(done.applied, done.index),
            Err(e) => ClusterReply::Err(e.into()),
        },
        ClusterMsg::ReadIndex => match c.read_index().await {
            Ok(i) => ClusterReply::Index(i),
            Err(e) => ClusterReply::Err(e.into()),
        },
        ClusterMsg::ToAgent { host, command } => match links.send(&host, command).await {
            Ok(r) => ClusterReply::Agent(r),
            Err(e) => ClusterReply::Err(RemoteError::Unavailable(e.to_string())),
        },
        ClusterMsg::LeaderLeaving { leader, successor } => {
            if successor == c.node_id() {
                tokio::spawn(stand_for_election(c.clone(), leader));
            }
            ClusterReply::Done
        }
        ClusterMsg::VsLoad { node, peaks } => {
            load.record_remote(node, peaks.into_iter().take(10_000).collect());
            ClusterReply::Done
        }
        ClusterMsg::Membership(op) => {
            if c.is_leader() {
                match cluster.change_membership(op).await {
                    Ok(outcome) => ClusterReply::Membership(outcome),
                    Err(e) => ClusterReply::Err(e.into()),
                }
            } else {
                ClusterReply::Err(RemoteError::NotLeader(c.leader().map(|(id, _)| id)))
            }
        }
        ClusterMsg::Identify => ClusterReply::Identity {
            node_id: c.node_id(),
            voters: c.membership().voters.into_iter().collect(),
        },
    }
}
