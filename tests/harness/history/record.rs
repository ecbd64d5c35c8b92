//! The history: what outside observers saw, recorded in order from many tasks.

use respawn_types::{BattleSessionId, PlacementId, PlacementStatus, ProcessId};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One thing an outside observer saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// A backend's StartBattleSessionPlacement was answered 200 (accepted).
    PlacementAccepted {
        placement: PlacementId,
        battle_session: BattleSessionId,
    },
    /// StartBattleSessionPlacement got an error or no answer (it may or may
    /// not have been accepted). Not counted as accepted.
    PlacementIndeterminate { battle_session: BattleSessionId },
    /// StartBattleSessionPlacement (or the RequestBattleSessionID before
    /// it, `battle_session: None`) was refused: a 4xx, or a server error
    /// other than "unavailable" (500). A valid request during faults must
    /// never be refused, so the checker reports every one; a refusal a
    /// scenario expects (503 on a minority) is asserted by the test, not
    /// recorded here.
    PlacementRefused {
        battle_session: Option<BattleSessionId>,
        status: u16,
        error: String,
    },
    /// RequestBattleSessionID got no id because the cluster was unavailable
    /// (502/503/504 or no answer): nothing was placed.
    PlacementNotStarted { error: String },
    /// A Describe answered this status for the placement.
    PlacementStatusSeen {
        placement: PlacementId,
        status: PlacementStatus,
    },
    /// A Describe answered 404 `expired`: retention removed the placement,
    /// which it does only once the placement and its session have ended.
    PlacementExpiredSeen { placement: PlacementId },
    /// A (simulated) DS process received OnStartBattleSession.
    SessionDelivered {
        process: ProcessId,
        battle_session: BattleSessionId,
    },
    /// A DS process's ActivateBattleSession was answered OK.
    SessionActivated {
        process: ProcessId,
        battle_session: BattleSessionId,
    },
    /// A battle session certainly ended on a process: the DS received
    /// OnTerminateBattleSession, or its TerminateBattleSession was answered
    /// OK. Frees a slot in parallel mode (a process's sessions also end with
    /// [`Observation::ProcessEnded`]). Record it only when certain.
    SessionEnded {
        process: ProcessId,
        battle_session: BattleSessionId,
    },
    /// A DS process ended (ProcessEnding or exit).
    ProcessEnded { process: ProcessId },
    /// The cluster asked a DS process to terminate (OnProcessTerminate).
    TerminateRequested { process: ProcessId },
    /// A placement-finished event was delivered to a subscriber (with its
    /// de-duplication id).
    EventDelivered {
        placement: PlacementId,
        status: PlacementStatus,
        event_id: String,
    },
}

/// A recorded observation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Position in the history (0, 1, 2, … in recording order).
    pub seq: u64,
    /// When the observed operation started (time since the history was
    /// created); equal to `at` for [`History::record`].
    pub invoked: Duration,
    /// When it was recorded (time since the history was created); monotonic
    /// in `seq`.
    pub at: Duration,
    pub obs: Observation,
}

/// A thread-safe, append-only history. Cheap to clone (clones share it).
#[derive(Clone, Debug)]
pub struct History {
    start: Instant,
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    pub fn new() -> Self {
        History {
            start: Instant::now(),
            entries: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The history's clock: time since it was created. Take it before an
    /// operation and pass it to [`History::record_since`].
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records an observation that happened now.
    pub fn record(&self, o: Observation) {
        self.push(None, o);
    }

    /// Records the result of an operation started at `invoked` (from
    /// [`History::now`]). Only matters for reads (Describe): a PENDING read
    /// is a regression only if it started after a terminal read ended, so
    /// concurrent reads recorded out of order are not flagged.
    pub fn record_since(&self, invoked: Duration, o: Observation) {
        self.push(Some(invoked), o);
    }

    fn push(&self, invoked: Option<Duration>, obs: Observation) {
        let mut v = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // The clock is read under the lock, so `at` is monotonic in `seq`.
        let at = self.start.elapsed();
        let invoked = invoked.map_or(at, |i| i.min(at));
        let seq = v.len() as u64;
        v.push(Entry {
            seq,
            invoked,
            at,
            obs,
        });
    }

    /// A copy of all entries so far, in `seq` order.
    pub fn snapshot(&self) -> Vec<Entry> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
