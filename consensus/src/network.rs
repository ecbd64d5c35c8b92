//! The network seam: openraft reaches peers through a
//! [`RaftNetworkFactory<TypeConfig>`] given to [`crate::Consensus::open`].
//! The QUIC implementation lives in the `net` crate; this module has the
//! trivial one for a cluster of one.

use crate::error::ConsensusError;
use crate::types::{NodeInfo, TypeConfig};
use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

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
