//! Reports to the cluster (process started/ready/ending/exited) that must
//! not be lost: queued, and delivered one at a time in order, each retried
//! until the link takes it.

use super::backoff::report_retry_delay;
use super::link::ServerLink;
use respawn_types::agent::{AgentToServer, ServerReply};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};

/// Sending half of the report queue. Cheap to clone.
#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::UnboundedSender<AgentToServer>,
    pending: Arc<AtomicUsize>,
    nudge: Arc<Notify>,
}

impl Reporter {
    /// Starts the delivery task; it ends when every `Reporter` is dropped
    /// and the queue is empty.
    pub fn start(link: Arc<dyn ServerLink>) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let nudge = Arc::new(Notify::new());
        let task = tokio::spawn(deliver(link, rx, pending.clone(), nudge.clone()));
        (Self { tx, pending, nudge }, task)
    }

    /// Queues a report. Never blocks.
    pub fn send(&self, msg: AgentToServer) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(msg).is_err() {
            // The delivery task is gone (agent shutting down).
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Reports queued or in flight.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// The link came back: retry now instead of at the end of the backoff.
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }
}

async fn deliver(
    link: Arc<dyn ServerLink>,
    mut rx: mpsc::UnboundedReceiver<AgentToServer>,
    pending: Arc<AtomicUsize>,
    nudge: Arc<Notify>,
) {
    while let Some(msg) = rx.recv().await {
        let mut attempt = 0u32;
        loop {
            match link.call(msg.clone()).await {
                Ok(ServerReply::Err(e)) => {
                    // Delivered; the cluster refused it. Retrying cannot help.
                    tracing::warn!(?msg, error = %e, "cluster refused a report");
                    break;
                }
                Ok(_) => break,
                Err(down) => {
                    if attempt == 0 {
                        tracing::debug!(error = %down, "report not delivered; will retry");
                    }
                    let delay = report_retry_delay(attempt);
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = nudge.notified() => {}
                    }
                }
            }
        }
        pending.fetch_sub(1, Ordering::SeqCst);
    }
}
