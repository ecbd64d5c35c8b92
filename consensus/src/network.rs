//! The network seam: openraft reaches peers through a
//! [`RaftNetworkFactory<TypeConfig>`] given to `Consensus::open`.
//!
//! - [`TransportNetwork`]: Raft RPCs over a node [`Transport`]
//!   (`respawn_net::QuicTransport` in production, `MemRouter` in tests),
//!   as `Service::Raft` calls encoded by [`crate::rpc`]. The receiving
//!   node hands those calls to `Consensus::handle_raft`.
//! - [`SingleNodeNetwork`]: the trivial network of a cluster of one.

use crate::error::ConsensusError;
use crate::rpc::{RaftRpc, WireReply, APPEND_ENTRIES_BUDGET, MAX_RPC_LEN};
use crate::types::{NodeInfo, TypeConfig};
use bytes::Bytes;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::RPCTypes;
use respawn_net::{Service, SharedTransport, Transport, TransportError};
use serde::de::DeserializeOwned;

/// Raft over a node [`Transport`]: each RPC is one `Service::Raft` call to
/// the target, with openraft's time limit for that RPC as its timeout.
///
/// `new_client` passes the target's `raft_addr` (from the membership) to
/// [`Transport::set_address`], so the transport always dials the address
/// the cluster agreed on.
///
/// Errors: a transport that cannot reach the target gives openraft
/// `Unreachable` (it backs off before retrying), one that runs out of time
/// gives `Timeout`; an error the target's Raft answered comes back as a
/// `RemoteError`; an AppendEntries too large to send gives
/// `PayloadTooLarge` with a smaller entry count, so that the leader splits
/// it.
#[derive(Clone)]
pub struct TransportNetwork {
    transport: SharedTransport,
}

impl TransportNetwork {
    /// A network over `transport`.
    pub fn new(transport: SharedTransport) -> TransportNetwork {
        TransportNetwork { transport }
    }
}

impl std::fmt::Debug for TransportNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportNetwork").finish_non_exhaustive()
    }
}

impl RaftNetworkFactory<TypeConfig> for TransportNetwork {
    type Network = TransportClient;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> TransportClient {
        self.transport.set_address(target, &node.raft_addr);
        TransportClient {
            target,
            node: node.clone(),
            transport: self.transport.clone(),
        }
    }
}

/// The connection to one member that [`TransportNetwork`] hands out.
#[derive(Clone)]
pub struct TransportClient {
    target: u64,
    node: NodeInfo,
    transport: SharedTransport,
}

impl std::fmt::Debug for TransportClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportClient")
            .field("target", &self.target)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn network_error<E: std::error::Error>(target: u64, why: String) -> RPCError<u64, NodeInfo, E> {
    RPCError::Network(NetworkError::new(&ConsensusError::Unreachable {
        node: target,
        reason: why,
    }))
}

impl TransportClient {
    /// Sends `encoded` and decodes the reply as `Result<T, RaftError<E>>`.
    async fn exchange<T, E>(
        &self,
        action: RPCTypes,
        sender: u64,
        encoded: Vec<u8>,
        option: &RPCOption,
    ) -> Result<T, RPCError<u64, NodeInfo, RaftError<u64, E>>>
    where
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
        RaftError<u64, E>: DeserializeOwned,
    {
        let timeout = option.hard_ttl();
        let reply = match Transport::call(
            &*self.transport,
            self.target,
            Service::Raft,
            Bytes::from(encoded),
            timeout,
        )
        .await
        {
            Ok(reply) => reply,
            Err(TransportError::Timeout(..)) => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: sender,
                    target: self.target,
                    timeout,
                }))
            }
            Err(e @ (TransportError::Unreachable(..) | TransportError::UnknownNode(_))) => {
                return Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
        };
        let result = WireReply::decode(&reply)
            .and_then(WireReply::into_result::<T, RaftError<u64, E>>)
            .map_err(|why| network_error(self.target, why))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

/// The id of the member that sent a request carrying `vote`.
fn sender(vote: &crate::types::Vote) -> u64 {
    vote.leader_id().voted_for().unwrap_or_default()
}

impl RaftNetwork<TypeConfig> for TransportClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        let from = sender(&rpc.vote);
        let n = rpc.entries.len();
        let encoded = RaftRpc::AppendEntries(rpc)
            .encode()
            .map_err(|why| network_error(self.target, why))?;
        if encoded.len() > APPEND_ENTRIES_BUDGET && n > 1 {
            // Ask for a share of the entries that fits the budget (at
            // least one; a lone entry is sent if it fits in a frame).
            let fits = (n as u128 * APPEND_ENTRIES_BUDGET as u128 / encoded.len() as u128) as u64;
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fits.clamp(1, n as u64 - 1)),
            ));
        }
        if encoded.len() > MAX_RPC_LEN {
            tracing::error!(
                target = self.target,
                bytes = encoded.len(),
                "a log entry is larger than a node frame; it cannot be replicated"
            );
            return Err(network_error(
                self.target,
                format!(
                    "append-entries of {} bytes exceeds {MAX_RPC_LEN}",
                    encoded.len()
                ),
            ));
        }
        self.exchange(RPCTypes::AppendEntries, from, encoded, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, NodeInfo, RaftError<u64, InstallSnapshotError>>,
    > {
        let from = sender(&rpc.vote);
        let encoded = RaftRpc::InstallSnapshot(rpc)
            .encode()
            .map_err(|why| network_error(self.target, why))?;
        if encoded.len() > MAX_RPC_LEN {
            return Err(network_error(
                self.target,
                format!(
                    "snapshot chunk of {} bytes exceeds {MAX_RPC_LEN}; lower snapshot_chunk_bytes",
                    encoded.len()
                ),
            ));
        }
        self.exchange(RPCTypes::InstallSnapshot, from, encoded, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        let from = sender(&rpc.vote);
        let encoded = RaftRpc::Vote(rpc)
            .encode()
            .map_err(|why| network_error(self.target, why))?;
        self.exchange(RPCTypes::Vote, from, encoded, &option).await
    }
}

/// A network for a single-member cluster: every peer is unreachable.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleNodeNetwork;

/// The "connection" [`SingleNodeNetwork`] hands out: every RPC fails with
/// `Unreachable`.
#[derive(Clone, Copy, Debug)]
pub struct NoConnection {
    target: u64,
}

impl NoConnection {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<u64, NodeInfo, E> {
        RPCError::Unreachable(Unreachable::new(&ConsensusError::Unreachable {
            node: self.target,
            reason: "single-node network has no peers".into(),
        }))
    }
}

impl RaftNetworkFactory<TypeConfig> for SingleNodeNetwork {
    type Network = NoConnection;

    async fn new_client(&mut self, target: u64, _node: &NodeInfo) -> NoConnection {
        NoConnection { target }
    }
}

impl RaftNetwork<TypeConfig> for NoConnection {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, NodeInfo, RaftError<u64, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        Err(self.unreachable())
    }
}
