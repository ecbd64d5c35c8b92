//! The placement and activation timeouts of every battle session that is
//! PENDING or ACTIVATING, kept by one actor per node, [`SessionTimers`],
//! with a single timer for the earliest deadline. Each deadline is re-read
//! from the committed state ([`session_due`]) whenever its session changes
//! (and after a restart), so the actor holds nothing the log does not.
//!
//! One actor for all sessions rather than one per session: a placement
//! then costs a few map updates instead of an actor spawned and stopped
//! and two timer tasks started and aborted. The decisions stay in the pure
//! [`session_due`]; the bookkeeping of deadlines is [`Timetable`], unit
//! tested below.

use crate::policy::{session_due, SessionDue, SessionView};
use crate::ports::{Deps, ProposeError};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use respawn_types::{now_millis, BattleSessionId, UnixMillis};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long a timeout command that could not be committed waits before
/// it is tried again.
const RETRY_AFTER_MS: u64 = 500;

pub struct SessionTimers;

#[derive(Debug)]
pub enum SessionMsg {
    /// The session or its placement changed: look at its deadline again.
    Changed(BattleSessionId),
    /// The earliest deadline may have passed.
    Tick,
    /// The timeout command of a session finished.
    Proposed { id: BattleSessionId, retry: bool },
}

/// The next deadline of each session that has one, ordered by time.
///
/// Bounded by the sessions that are PENDING or ACTIVATING (one entry
/// each), which the replicated state bounds (`respawn_types::limits`).
#[derive(Debug, Default)]
pub struct Timetable {
    due: HashMap<BattleSessionId, UnixMillis>,
    queue: BTreeSet<(UnixMillis, BattleSessionId)>,
}

impl Timetable {
    /// Sets (or moves) the deadline of `id`.
    pub fn set(&mut self, id: BattleSessionId, at: UnixMillis) {
        self.remove(&id);
        self.queue.insert((at, id.clone()));
        self.due.insert(id, at);
    }

    /// Forgets the deadline of `id`, if it has one.
    pub fn remove(&mut self, id: &BattleSessionId) {
        if let Some(at) = self.due.remove(id) {
            self.queue.remove(&(at, id.clone()));
        }
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<UnixMillis> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Takes out every session whose deadline is at or before `now`,
    /// earliest first.
    pub fn take_due(&mut self, now: UnixMillis) -> Vec<BattleSessionId> {
        let mut out = Vec::new();
        while let Some((at, _)) = self.queue.first() {
            if *at > now {
                break;
            }
            if let Some((_, id)) = self.queue.pop_first() {
                self.due.remove(&id);
                out.push(id);
            }
        }
        out
    }

    /// Sessions with a deadline.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

/// The task of a `send_after` timer.
type Timer = JoinHandle<Result<(), ractor::MessagingErr<SessionMsg>>>;

pub struct TimersState {
    deps: Deps,
    table: Timetable,
    /// Sessions whose timeout command is being committed.
    proposing: HashSet<BattleSessionId>,
    /// The one timer: when it fires, and its task.
    timer: Option<(UnixMillis, Timer)>,
}

impl Actor for SessionTimers {
    type Msg = SessionMsg;
    type State = TimersState;
    /// The sessions to look at first (those PENDING or ACTIVATING when
    /// the node's actors are built).
    type Arguments = (Vec<BattleSessionId>, Deps);

    async fn pre_start(
        &self,
        myself: ActorRef<SessionMsg>,
        (sessions, deps): Self::Arguments,
    ) -> Result<TimersState, ActorProcessingErr> {
        let mut st = TimersState {
            deps,
            table: Timetable::default(),
            proposing: HashSet::new(),
            timer: None,
        };
        let now = now_millis();
        for id in sessions {
            evaluate(&myself, &mut st, id, now);
        }
        rearm(&myself, &mut st, now);
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        msg: SessionMsg,
        st: &mut TimersState,
    ) -> Result<(), ActorProcessingErr> {
        let now = now_millis();
        match msg {
            SessionMsg::Changed(id) => evaluate(&myself, st, id, now),
            SessionMsg::Tick => {
                // The timer that fired is done; abort whatever else is
                // armed so that only one timer is ever pending.
                if let Some((_, t)) = st.timer.take() {
                    t.abort();
                }
                for id in st.table.take_due(now) {
                    evaluate(&myself, st, id, now);
                }
            }
            SessionMsg::Proposed { id, retry } => {
                st.proposing.remove(&id);
                if retry {
                    st.table.set(id, now.saturating_add(RETRY_AFTER_MS));
                } else {
                    evaluate(&myself, st, id, now);
                }
            }
        }
        rearm(&myself, st, now);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SessionMsg>,
        st: &mut TimersState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some((_, t)) = st.timer.take() {
            t.abort();
        }
        Ok(())
    }
}

/// Looks at session `id` in the committed state: forgets it, keeps its
/// next deadline, or commits its timeout now.
fn evaluate(
    myself: &ActorRef<SessionMsg>,
    st: &mut TimersState,
    id: BattleSessionId,
    now: UnixMillis,
) {
    st.table.remove(&id);
    match st.deps.read(|s| session_due(SessionView::of(s, &id), now)) {
        SessionDue::Finished | SessionDue::Idle => {}
        SessionDue::At(at) => st.table.set(id, at),
        SessionDue::Now(command) => {
            if !st.proposing.insert(id.clone()) {
                return;
            }
            tracing::info!(battle_session = %id, ?command, "deadline passed");
            let commands = st.deps.commands.clone();
            let me = myself.clone();
            tokio::spawn(async move {
                let retry = match commands.propose(*command).await {
                    Ok(_) => false,
                    Err(ProposeError::Rejected(r)) => {
                        tracing::debug!(%r, "timeout command rejected");
                        false
                    }
                    Err(ProposeError::Unavailable(e)) => {
                        tracing::warn!(%e, "could not commit a timeout; retrying");
                        true
                    }
                };
                let _ = me.cast(SessionMsg::Proposed { id, retry });
            });
        }
    }
}

/// Points the one timer at the earliest deadline (just after it).
fn rearm(myself: &ActorRef<SessionMsg>, st: &mut TimersState, now: UnixMillis) {
    let next = st.table.next();
    if st.timer.as_ref().map(|(at, _)| *at) == next {
        return;
    }
    if let Some((_, t)) = st.timer.take() {
        t.abort();
    }
    if let Some(at) = next {
        let wait = Duration::from_millis(at.saturating_sub(now) + 1);
        st.timer = Some((at, myself.send_after(wait, || SessionMsg::Tick)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> BattleSessionId {
        BattleSessionId::new_unchecked(format!("bs-{n:04}"))
    }

    #[test]
    fn deadlines_come_out_in_time_order_and_only_when_due() {
        let mut t = Timetable::default();
        t.set(id(1), 300);
        t.set(id(2), 100);
        t.set(id(3), 200);
        assert_eq!(t.next(), Some(100));
        assert!(t.take_due(99).is_empty());
        assert_eq!(t.take_due(200), vec![id(2), id(3)]);
        assert_eq!(t.next(), Some(300));
        assert_eq!(t.len(), 1);
        assert_eq!(t.take_due(1000), vec![id(1)]);
        assert!(t.is_empty());
        assert_eq!(t.next(), None);
    }

    #[test]
    fn a_moved_deadline_replaces_the_old_one_and_a_removed_one_never_fires() {
        let mut t = Timetable::default();
        t.set(id(1), 100);
        t.set(id(1), 500);
        t.set(id(2), 150);
        t.remove(&id(2));
        t.remove(&id(9));
        assert_eq!(t.len(), 1);
        assert!(t.take_due(400).is_empty());
        assert_eq!(t.take_due(500), vec![id(1)]);
        assert!(t.is_empty());
    }

    #[test]
    fn sessions_due_at_the_same_time_all_come_out() {
        let mut t = Timetable::default();
        for n in 0..5 {
            t.set(id(n), 42);
        }
        assert_eq!(t.take_due(42).len(), 5);
        assert!(t.is_empty());
    }
}
