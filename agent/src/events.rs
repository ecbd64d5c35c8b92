//! Per-process queue of SDK events (the callbacks the DS receives on its
//! `GET /v1/events` stream).

use respawn_types::sdk::SdkEvent;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::Notify;

/// Undelivered events kept per process; the oldest is dropped beyond this.
pub const MAX_PENDING_EVENTS: usize = 256;

/// What the current reader should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Write this event (boxed: a battle session spec is large).
    Event(Box<SdkEvent>),
    /// Nothing to send: wait for the reader's wake-up.
    Wait,
    /// This stream is over (replaced by a newer one, or the process is gone).
    End,
}

/// Events waiting for the process's event stream. At most one stream reads
/// at a time: a new stream replaces the old one, which ends. Events pushed
/// while no stream is connected wait for the next one.
#[derive(Debug, Default)]
pub struct EventQueue {
    pending: VecDeque<SdkEvent>,
    generation: u64,
    reader: Option<Arc<Notify>>,
    closed: bool,
}

impl EventQueue {
    /// Queues an event and wakes the reader. A new health check supersedes
    /// any older one not yet delivered.
    pub fn push(&mut self, event: SdkEvent) {
        if matches!(event, SdkEvent::HealthCheck { .. }) {
            self.pending
                .retain(|e| !matches!(e, SdkEvent::HealthCheck { .. }));
        }
        if self.pending.len() >= MAX_PENDING_EVENTS {
            if let Some(dropped) = self.pending.pop_front() {
                tracing::warn!(?dropped, "event queue full; dropped the oldest event");
            }
        }
        self.pending.push_back(event);
        if let Some(reader) = &self.reader {
            reader.notify_one();
        }
    }

    /// A new stream connects: returns its generation and its wake-up. The
    /// previous stream, if any, is told to end.
    pub fn attach(&mut self) -> (u64, Arc<Notify>) {
        self.generation += 1;
        if let Some(old) = self.reader.take() {
            old.notify_one();
        }
        let wake = Arc::new(Notify::new());
        self.reader = Some(wake.clone());
        (self.generation, wake)
    }

    /// The next step for the stream of `generation`.
    pub fn next_for(&mut self, generation: u64) -> Next {
        if self.closed || generation != self.generation {
            return Next::End;
        }
        match self.pending.pop_front() {
            Some(e) => Next::Event(Box::new(e)),
            None => Next::Wait,
        }
    }

    /// The process is gone: end its stream.
    pub fn close(&mut self) {
        self.closed = true;
        if let Some(reader) = self.reader.take() {
            reader.notify_one();
        }
    }

    /// Events not yet handed to a stream.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use respawn_types::BattleSessionId;

    fn term(id: &str) -> SdkEvent {
        SdkEvent::TerminateBattleSession {
            battle_session_id: BattleSessionId::new_unchecked(id),
        }
    }

    #[test]
    fn events_wait_for_a_stream_then_flow_in_order() {
        let mut q = EventQueue::default();
        q.push(term("bs-1"));
        q.push(term("bs-2"));
        let (g, _) = q.attach();
        assert_eq!(q.next_for(g), Next::Event(Box::new(term("bs-1"))));
        assert_eq!(q.next_for(g), Next::Event(Box::new(term("bs-2"))));
        assert_eq!(q.next_for(g), Next::Wait);
    }

    #[test]
    fn a_new_stream_replaces_the_old_one_and_keeps_undelivered_events() {
        let mut q = EventQueue::default();
        let (g1, _) = q.attach();
        q.push(term("bs-1"));
        let (g2, _) = q.attach();
        assert_eq!(q.next_for(g1), Next::End);
        assert_eq!(q.next_for(g2), Next::Event(Box::new(term("bs-1"))));
    }

    #[tokio::test]
    async fn push_wakes_the_reader_even_before_it_waits() {
        let mut q = EventQueue::default();
        let (g, wake) = q.attach();
        assert_eq!(q.next_for(g), Next::Wait);
        q.push(term("bs-1"));
        // The wake-up was stored: this returns at once.
        tokio::time::timeout(std::time::Duration::from_secs(5), wake.notified())
            .await
            .unwrap_or_else(|_| panic!("reader was not woken"));
        assert_eq!(q.next_for(g), Next::Event(Box::new(term("bs-1"))));
    }

    #[test]
    fn newer_health_checks_supersede_undelivered_ones() {
        let mut q = EventQueue::default();
        q.push(SdkEvent::HealthCheck { seq: 1 });
        q.push(term("bs-1"));
        q.push(SdkEvent::HealthCheck { seq: 2 });
        assert_eq!(q.pending(), 2);
        let (g, _) = q.attach();
        assert_eq!(q.next_for(g), Next::Event(Box::new(term("bs-1"))));
        assert_eq!(
            q.next_for(g),
            Next::Event(Box::new(SdkEvent::HealthCheck { seq: 2 }))
        );
    }

    #[test]
    fn the_queue_is_bounded_and_close_ends_the_stream() {
        let mut q = EventQueue::default();
        for i in 0..MAX_PENDING_EVENTS + 5 {
            q.push(term(&format!("bs-{i}")));
        }
        assert_eq!(q.pending(), MAX_PENDING_EVENTS);
        let (g, _) = q.attach();
        assert_eq!(q.next_for(g), Next::Event(Box::new(term("bs-5"))));
        q.close();
        assert_eq!(q.next_for(g), Next::End);
    }
}
