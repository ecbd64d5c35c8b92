//! [`ReadIndexBatcher`]: concurrent read-index requests on the leader share
//! one round of heartbeats instead of one round each.
//!
//! openraft 0.9 answers every `get_read_log_id` with its own round: an
//! AppendEntries to each follower, each handled by the follower's Raft core
//! (which waits for any fsync in progress there). Under load that is two
//! RPCs per read in a three-node cluster. One task owns the queue here: it
//! takes every request waiting, runs one round, and gives each the same
//! answer. A lone request runs at once; requests that arrive while a round
//! is out wait for the next one, never for the one already started.
//!
//! Why that is still linearizable: a round confirms leadership with a
//! quorum *after* it starts and returns the commit index as of its start.
//! Every request it answers was queued before it started, so every write
//! completed before such a request began is at or below that index.

use crate::error::{fatal, ConsensusError};
use crate::types::Raft;
use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::{mpsc, oneshot};

/// Most requests answered by one round. The queue itself holds at most
/// one entry per caller waiting in [`ReadIndexBatcher::read_index`].
const MAX_SHARED: usize = 4096;

type Reply = oneshot::Sender<Result<u64, ConsensusError>>;

/// The sending side of the read-index queue.
#[derive(Clone)]
pub(crate) struct ReadIndexBatcher {
    tx: mpsc::UnboundedSender<Reply>,
}

impl ReadIndexBatcher {
    /// Starts the task. It ends when every clone is dropped.
    pub(crate) fn spawn(raft: Raft) -> ReadIndexBatcher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        ReadIndexBatcher { tx }
    }

    /// The read index of a round started after this call.
    pub(crate) async fn read_index(&self) -> Result<u64, ConsensusError> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(reply).is_err() {
            return Err(ConsensusError::ShuttingDown);
        }
        rx.await.unwrap_or(Err(ConsensusError::ShuttingDown))
    }
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<Reply>) {
    let mut waiting = Vec::new();
    while rx.recv_many(&mut waiting, MAX_SHARED).await > 0 {
        let answer = one_round(&raft).await;
        for reply in waiting.drain(..) {
            // A reader that stopped waiting is not an error.
            let _ = reply.send(answer.clone());
        }
    }
}

/// One read-index round: leadership confirmed by a quorum, and the index
/// to have applied before reading.
async fn one_round(raft: &Raft) -> Result<u64, ConsensusError> {
    match raft.get_read_log_id().await {
        Ok((read, _applied)) => Ok(read.map(|l| l.index).unwrap_or(0)),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
            Err(ConsensusError::NotLeader {
                leader: f.leader_id,
            })
        }
        Err(RaftError::APIError(e)) => Err(ConsensusError::Raft(e.to_string())),
        Err(RaftError::Fatal(e)) => Err(fatal(e)),
    }
}
