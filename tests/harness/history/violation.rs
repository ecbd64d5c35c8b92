//! A broken invariant and how it reads in an assertion message.

use respawn_types::{BattleSessionId, PlacementId, PlacementStatus, ProcessId};
use std::fmt;

/// Where a placement status was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seen {
    /// In the history entry with this `seq` (a Describe or an event).
    Entry(u64),
    /// In the final state.
    Final,
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::Entry(s) => write!(f, "#{s}"),
            Seen::Final => f.write_str("final state"),
        }
    }
}

/// A placement status and where it was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sighting {
    pub status: PlacementStatus,
    pub seen: Seen,
}

impl fmt::Display for Sighting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", status_name(self.status), self.seen)
    }
}

/// A broken invariant, with the ids and history positions (`seq`) involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// (0) A placement request was refused (4xx or 500) at entry `seq`;
    /// `battle_session` is `None` when its RequestBattleSessionID was.
    PlacementRefused {
        battle_session: Option<BattleSessionId>,
        status: u16,
        error: String,
        seq: u64,
    },
    /// (1) An accepted placement is not terminal in the final state
    /// (`final_status` PENDING, or `None`: missing).
    NotTerminal {
        placement: PlacementId,
        accepted_seq: u64,
        final_status: Option<PlacementStatus>,
    },
    /// (1) An accepted placement's battle session is another one in the
    /// final state (`other_seq: None`) or in another acceptance.
    SessionMismatch {
        placement: PlacementId,
        accepted: BattleSessionId,
        accepted_seq: u64,
        other: BattleSessionId,
        other_seq: Option<u64>,
    },
    /// (1) Two different terminal statuses were seen for one placement.
    ConflictingTerminal {
        placement: PlacementId,
        first: Sighting,
        second: Sighting,
    },
    /// (1) PENDING was seen (by a read started after) a terminal status was seen.
    TerminalRegressed {
        placement: PlacementId,
        terminal: Sighting,
        pending: Seen,
    },
    /// (2) A simple-mode process got more than one battle session in its
    /// lifetime (each with the `seq` of its first delivery or activation).
    SimpleModeReused {
        process: ProcessId,
        sessions: Vec<(BattleSessionId, u64)>,
    },
    /// (Design invariant 2) A process was asked to terminate while it held
    /// these delivered or activated, not ended sessions.
    BusyProcessStopped {
        process: ProcessId,
        held: Vec<BattleSessionId>,
        seq: u64,
    },
    /// (2) A parallel-mode process held more activated, not ended sessions
    /// than `max_sessions` after entry `seq`.
    ParallelOverCapacity {
        process: ProcessId,
        max_sessions: u32,
        held: Vec<BattleSessionId>,
        seq: u64,
    },
    /// (3) A battle session was activated on two processes.
    ActiveOnTwoProcesses {
        battle_session: BattleSessionId,
        first: (ProcessId, u64),
        second: (ProcessId, u64),
    },
    /// (4) A placement was seen FULFILLED but no DS activated its session.
    FulfilledNotActivated {
        placement: PlacementId,
        battle_session: BattleSessionId,
        seen: Seen,
    },
    /// (5) Events were delivered, but none for this terminal placement with
    /// its final status.
    EventMissing {
        placement: PlacementId,
        status: PlacementStatus,
    },
    /// (5) One event id carried two different (placement, status) pairs.
    EventIdConflict {
        event_id: String,
        first: (PlacementId, PlacementStatus, u64),
        second: (PlacementId, PlacementStatus, u64),
    },
    /// (5) A placement-finished event carried PENDING.
    EventNotTerminal {
        placement: PlacementId,
        event_id: String,
        seq: u64,
    },
    /// (1) A Describe answered `expired` (#`expired_seq`), yet the
    /// placement was seen again later (a read that started after it, or
    /// the final state): a pruned record came back.
    SeenAfterExpired {
        placement: PlacementId,
        expired_seq: u64,
        seen: Seen,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Violation::*;
        match self {
            PlacementRefused {
                battle_session,
                status,
                error,
                seq,
            } => write!(
                f,
                "placement of {} refused at #{seq}: {status} {error}",
                battle_session
                    .as_ref()
                    .map_or("a new battle session", |b| b.as_str())
            ),
            NotTerminal {
                placement,
                accepted_seq,
                final_status,
            } => write!(
                f,
                "placement {placement} accepted at #{accepted_seq} is {} in the final state",
                final_status.map_or("missing", status_name)
            ),
            SessionMismatch {
                placement,
                accepted,
                accepted_seq,
                other,
                other_seq,
            } => write!(
                f,
                "placement {placement} accepted at #{accepted_seq} for {accepted} has battle session {other} in {}",
                other_seq.map_or(Seen::Final, Seen::Entry)
            ),
            ConflictingTerminal {
                placement,
                first,
                second,
            } => write!(
                f,
                "placement {placement} seen {first} then {second}"
            ),
            TerminalRegressed {
                placement,
                terminal,
                pending,
            } => write!(
                f,
                "placement {placement} seen {terminal}, then PENDING at {pending}"
            ),
            SimpleModeReused { process, sessions } => {
                write!(f, "simple-mode process {process} got sessions")?;
                for (bs, seq) in sessions {
                    write!(f, " {bs} (#{seq})")?;
                }
                Ok(())
            }
            BusyProcessStopped { process, held, seq } => write!(
                f,
                "process {process} was asked to terminate (#{seq}) while holding {held:?}"
            ),
            ParallelOverCapacity {
                process,
                max_sessions,
                held,
                seq,
            } => {
                write!(
                    f,
                    "parallel process {process} (max {max_sessions}) held {} sessions after #{seq}:",
                    held.len()
                )?;
                for bs in held {
                    write!(f, " {bs}")?;
                }
                Ok(())
            }
            ActiveOnTwoProcesses {
                battle_session,
                first,
                second,
            } => write!(
                f,
                "battle session {battle_session} activated on {} (#{}) and on {} (#{})",
                first.0, first.1, second.0, second.1
            ),
            FulfilledNotActivated {
                placement,
                battle_session,
                seen,
            } => write!(
                f,
                "placement {placement} FULFILLED at {seen} but its battle session {battle_session} was never activated"
            ),
            EventMissing { placement, status } => write!(
                f,
                "no event delivered for placement {placement} {}",
                status_name(*status)
            ),
            EventIdConflict {
                event_id,
                first,
                second,
            } => write!(
                f,
                "event id {event_id:?} carried {} {} (#{}) and {} {} (#{})",
                first.0,
                status_name(first.1),
                first.2,
                second.0,
                status_name(second.1),
                second.2
            ),
            EventNotTerminal {
                placement,
                event_id,
                seq,
            } => write!(
                f,
                "event {event_id:?} at #{seq} says placement {placement} finished PENDING"
            ),
            SeenAfterExpired {
                placement,
                expired_seq,
                seen,
            } => write!(
                f,
                "placement {placement} answered expired at #{expired_seq} but was seen again at {seen}"
            ),
        }
    }
}

/// The status as PGOS spells it.
pub fn status_name(s: PlacementStatus) -> &'static str {
    match s {
        PlacementStatus::Pending => "PENDING",
        PlacementStatus::Fulfilled => "FULFILLED",
        PlacementStatus::Cancelled => "CANCELLED",
        PlacementStatus::TimedOut => "TIMED_OUT",
        PlacementStatus::Failed => "FAILED",
    }
}

/// One line per violation, for assertion messages.
pub fn summary(v: &[Violation]) -> String {
    if v.is_empty() {
        return "no violations".to_string();
    }
    let mut s = format!("{} violation(s):", v.len());
    for x in v {
        s.push_str("\n  - ");
        s.push_str(&x.to_string());
    }
    s
}
