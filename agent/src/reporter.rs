//! Reports to the cluster (process started/ready/ending/exited) that must
//! not be lost: queued, and delivered one at a time in order, each retried
//! until the link takes it.

use crate::backoff::report_retry_delay;
use crate::link::{LinkDown, ServerLink};
use respawn_types::agent::{AgentToServer, ErrorCode, ServerReply, WireError};
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
            match outcome(link.call(msg.clone()).await) {
                Outcome::Delivered => break,
                Outcome::Refused(e) => {
                    // Delivered; the cluster refused it. Retrying cannot help.
                    tracing::warn!(?msg, error = %e, "cluster refused a report");
                    break;
                }
                Outcome::Retry(why) => {
                    if attempt == 0 {
                        tracing::debug!(%why, "report not delivered; will retry");
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

/// What became of one delivery attempt.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The cluster took the report.
    Delivered,
    /// The cluster answered with an error that retrying will not change.
    Refused(WireError),
    /// Not delivered, or the cluster is momentarily unable (no leader):
    /// try again.
    Retry(String),
}

fn outcome(result: Result<ServerReply, LinkDown>) -> Outcome {
    match result {
        Ok(ServerReply::Ok)
        | Ok(ServerReply::Welcome { .. })
        | Ok(ServerReply::VsEndpoints { .. })
        | Ok(ServerReply::BattleSession { .. }) => Outcome::Delivered,
        Ok(ServerReply::Err(e))
            if matches!(e.code, ErrorCode::Unavailable | ErrorCode::NotLeader) =>
        {
            Outcome::Retry(e.to_string())
        }
        Ok(ServerReply::Err(e)) => Outcome::Refused(e),
        Err(down) => Outcome::Retry(down.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_are_retried_and_refusals_are_not() {
        assert_eq!(outcome(Ok(ServerReply::Ok)), Outcome::Delivered);
        assert!(matches!(
            outcome(Err(LinkDown("x".into()))),
            Outcome::Retry(_)
        ));
        for code in [ErrorCode::Unavailable, ErrorCode::NotLeader] {
            assert!(matches!(
                outcome(Ok(ServerReply::Err(WireError::new(code, "no leader")))),
                Outcome::Retry(_)
            ));
        }
        for code in [
            ErrorCode::NotFound,
            ErrorCode::BadRequest,
            ErrorCode::InvalidState,
            ErrorCode::Internal,
        ] {
            assert_eq!(
                outcome(Ok(ServerReply::Err(WireError::new(code, "no")))),
                Outcome::Refused(WireError::new(code, "no"))
            );
        }
    }
}
