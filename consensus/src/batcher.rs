//! [`ProposalBatcher`]: concurrent `propose` calls that queue up while the
//! previous log entry is being committed go into the next entry together,
//! so they share its fsync (and, in a cluster, its replication round).
//!
//! One task owns the queue. It takes everything queued (up to a limit),
//! writes it as one [`Batch`] through `Raft::client_write`, and hands each
//! proposer its own answer. A lone proposer is written at once: batching
//! adds no delay, it only uses the time the previous write takes.

use crate::error::{client_write_error, ConsensusError};
use crate::types::{Batch, Raft};
use respawn_state::{Applied, Request, Response};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// A command that was committed and applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// Its log index (the index its events carry).
    pub index: u64,
    /// What applying it answered.
    pub applied: Applied,
}

type Reply = oneshot::Sender<Result<Committed, ConsensusError>>;

struct Pending {
    req: Request,
    reply: Reply,
}

/// The sending side of the proposal queue.
#[derive(Clone)]
pub(crate) struct ProposalBatcher {
    tx: mpsc::UnboundedSender<Pending>,
    queued: Arc<AtomicUsize>,
}

impl ProposalBatcher {
    /// Starts the batching task. It ends when every `ProposalBatcher` clone is
    /// dropped.
    pub(crate) fn spawn(raft: Raft, max_batch: usize) -> ProposalBatcher {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(raft, rx, Arc::clone(&queued), max_batch.max(1)));
        ProposalBatcher { tx, queued }
    }

    /// Queues `req` and waits until it is committed and applied.
    pub(crate) async fn propose(&self, req: Request) -> Result<Committed, ConsensusError> {
        let (reply, rx) = oneshot::channel();
        self.queued.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(Pending { req, reply }).is_err() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(ConsensusError::ShuttingDown);
        }
        rx.await.unwrap_or(Err(ConsensusError::ShuttingDown))
    }

    /// Proposals waiting for the entry being written to commit.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }
}

async fn run(
    raft: Raft,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    queued: Arc<AtomicUsize>,
    max_batch: usize,
) {
    let mut buf = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut buf, max_batch).await > 0 {
        queued.fetch_sub(buf.len(), Ordering::SeqCst);
        let (reqs, replies): (Vec<Request>, Vec<Reply>) =
            buf.drain(..).map(|p| (p.req, p.reply)).unzip();
        let n = reqs.len();
        match raft.client_write(Batch(reqs)).await {
            Ok(resp) if resp.data.len() == n => {
                let index = resp.log_id.index;
                for (reply, answer) in replies.into_iter().zip(resp.data) {
                    // A proposer that stopped waiting is not an error.
                    let _ = reply.send(to_committed(index, answer));
                }
            }
            Ok(resp) => {
                // Apply answers every request of a batch; anything else is
                // a bug, reported to every proposer of the batch.
                let e = ConsensusError::Raft(format!(
                    "entry {} answered {} responses for {n} requests",
                    resp.log_id,
                    resp.data.len()
                ));
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
            Err(e) => {
                let e = client_write_error(e);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

fn to_committed(index: u64, answer: Response) -> Result<Committed, ConsensusError> {
    Ok(Committed {
        index,
        applied: answer?,
    })
}
