//! Pure decision functions behind the fleet, process and session actors,
//! each over the small part of the state it reads. No I/O, no clock: the
//! caller passes `now`. Each is unit-tested below.

use respawn_state::{ClusterState, Command, Shared};
use respawn_types::backoff::capped_exponential;
use respawn_types::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// What [`plan_assignments`] reads of a fleet: its mode, its placements
/// waiting for a process (oldest first) and its processes that can take a
/// session now (in id order), both read lazily.
pub struct FleetView<W, P> {
    pub mode: ServerMode,
    /// The fleet's version: processes launched with it are preferred (rolling updates).
    pub version: u64,
    pub waiting: W,
    pub placeable: P,
}

impl<'a>
    FleetView<
        Box<dyn Iterator<Item = &'a PlacementId> + 'a>,
        Box<dyn Iterator<Item = &'a DsProcess> + 'a>,
    >
{
    /// The view of fleet `id`, if it exists.
    pub fn of(state: &'a ClusterState, id: &FleetId) -> Option<Self> {
        let fleet = state.fleets.get(id)?;
        Some(FleetView {
            mode: fleet.mode,
            version: fleet.version,
            waiting: Box::new(state.waiting_placements(id)),
            placeable: Box::new(state.placeable_processes(id)),
        })
    }
}

/// The placement policy: match the fleet's waiting placements, oldest first,
/// to processes that can take a session now.
///
/// Processes are filled *packed*, like GameLift and Agones' default: the
/// process already holding the most sessions first (parallel mode), then the
/// one launched earliest (in simple mode, where every free process is empty,
/// that is id order: process ids are time-ordered), so idle capacity stays
/// on few processes and hosts. The work is bounded by the number of waiting
/// placements in simple mode.
/// Processes on hosts without a live agent link are skipped (the session
/// could not be delivered). `in_flight_*` are assignments proposed but not
/// yet applied; they count as taken.
pub fn plan_assignments<'a>(
    fleet: FleetView<impl Iterator<Item = &'a PlacementId>, impl Iterator<Item = &'a DsProcess>>,
    in_flight_placements: &HashSet<PlacementId>,
    in_flight_processes: &HashMap<ProcessId, u32>,
    connected: impl Fn(&HostId) -> bool,
    max: usize,
) -> Vec<(PlacementId, ProcessId)> {
    let waiting: Vec<&PlacementId> = fleet
        .waiting
        .filter(|p| !in_flight_placements.contains(*p))
        .take(max)
        .collect();
    if waiting.is_empty() {
        return Vec::new();
    }
    let taken = |p: &DsProcess| in_flight_processes.get(&p.id).copied().unwrap_or(0);
    // Free slots, best first.
    let slots: Vec<(&DsProcess, u32)> = match fleet.mode {
        // One session per process: every free process is alike, so take the
        // first ones in id (= launch) order and stop as soon as there are
        // enough — no scan of the whole fleet.
        // Processes of the fleet's current version first (a rolling
        // update): the scan stops once there are enough of them. Forking
        // mode's forked processes are alike too (its parents are never
        // placeable).
        ServerMode::Simple | ServerMode::Forking => {
            let (mut current, mut older) = (Vec::new(), Vec::new());
            for p in fleet
                .placeable
                .filter(|p| taken(p) == 0 && connected(&p.host_id))
            {
                if p.fleet_version == fleet.version {
                    current.push((p, 1));
                    if current.len() == waiting.len() {
                        break;
                    }
                } else if older.len() < waiting.len() {
                    older.push((p, 1));
                }
            }
            current.extend(older);
            current
        }
        // Fill the busiest process first (packed).
        ServerMode::Parallel { max_sessions } => {
            let mut slots: Vec<(&DsProcess, u32)> = fleet
                .placeable
                .filter(|p| connected(&p.host_id))
                .map(|p| {
                    (
                        p,
                        max_sessions
                            .saturating_sub(p.sessions_current)
                            .saturating_sub(taken(p)),
                    )
                })
                .filter(|(_, c)| *c > 0)
                .collect();
            let version = fleet.version;
            slots.sort_by(|(a, _), (b, _)| {
                (b.fleet_version == version)
                    .cmp(&(a.fleet_version == version))
                    .then(b.sessions_current.cmp(&a.sessions_current))
                    .then(a.launched_at.cmp(&b.launched_at))
                    .then(a.id.cmp(&b.id))
            });
            slots
        }
    };
    let mut plan = Vec::with_capacity(waiting.len());
    let mut slot = slots.into_iter().peekable();
    for placement in waiting {
        let Some((process, left)) = slot.peek_mut() else {
            break;
        };
        plan.push((placement.clone(), process.id.clone()));
        *left -= 1;
        if *left == 0 {
            slot.next();
        }
    }
    plan
}

/// What a battle session's actor must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionDue {
    /// Nothing timed is pending; wait for the next change.
    Idle,
    /// Check again at this time.
    At(UnixMillis),
    /// Propose this command now.
    Now(Box<Command>),
    /// The session and its placement are over: the actor can stop.
    Finished,
}

/// A battle session and its placement, as [`session_due`] reads them.
pub struct SessionView<'a> {
    pub session: Option<&'a BattleSession>,
    pub placement: Option<&'a Placement>,
}

impl<'a> SessionView<'a> {
    pub fn of(state: &'a ClusterState, id: &BattleSessionId) -> Self {
        let session = state.battle_sessions.get(id).map(|r| &**r);
        SessionView {
            session,
            placement: session.and_then(|s| state.placements.get(&s.placement_id).map(|r| &**r)),
        }
    }
}

/// Timers of a battle session and its placement: the activation deadline
/// while ACTIVATING, the placement deadline while waiting for a process.
pub fn session_due(view: SessionView<'_>, now: UnixMillis) -> SessionDue {
    let Some(s) = view.session else {
        return SessionDue::Finished;
    };
    let id = &s.id;
    let placement = view.placement;
    match s.status {
        BattleSessionStatus::Terminated => SessionDue::Finished,
        // Nothing is timed once ACTIVE (only its end can follow, which
        // needs no actor): the actor stops, so a node does not keep one per
        // running game (each costs several KB of mailboxes).
        BattleSessionStatus::Active => SessionDue::Finished,
        BattleSessionStatus::Activating => match (s.activation_deadline, &s.process_id) {
            (Some(d), Some(p)) if now >= d => {
                SessionDue::Now(Box::new(Command::ActivationTimedOut {
                    battle_session_id: id.clone(),
                    process_id: p.clone(),
                }))
            }
            (Some(d), _) => SessionDue::At(d),
            _ => SessionDue::Idle,
        },
        BattleSessionStatus::Pending => match placement {
            Some(pl) if pl.status == PlacementStatus::Pending => {
                if now >= pl.deadline {
                    SessionDue::Now(Box::new(Command::PlacementTimedOut {
                        placement_id: pl.id.clone(),
                    }))
                } else {
                    SessionDue::At(pl.deadline)
                }
            }
            _ => SessionDue::Idle,
        },
    }
}

/// What a DS process's actor must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessDue {
    Idle,
    /// ProcessEnding grace: kill at this time if still alive.
    KillAt(UnixMillis),
    /// The grace has passed: kill now.
    KillNow,
    /// The cluster wants it gone: tell the agent (OnProcessTerminate).
    Terminate,
    /// Exited or unknown: the actor can stop.
    Finished,
}

/// A DS process and its fleet, as [`process_due`] reads them.
pub struct ProcessView<'a> {
    pub process: Option<&'a DsProcess>,
    pub fleet: Option<&'a Fleet>,
}

impl<'a> ProcessView<'a> {
    pub fn of(state: &'a ClusterState, id: &ProcessId) -> Self {
        let process = state.processes.get(id).map(|r| &**r);
        ProcessView {
            process,
            fleet: process.and_then(|p| state.fleets.get(&p.fleet_id)),
        }
    }
}

/// Timers and orders of a DS process: the ProcessEnding grace, and the
/// cluster's wish to see it gone.
pub fn process_due(view: ProcessView<'_>, now: UnixMillis) -> ProcessDue {
    let Some(p) = view.process else {
        return ProcessDue::Finished;
    };
    match p.status {
        ProcessStatus::Exited => ProcessDue::Finished,
        ProcessStatus::Terminating => ProcessDue::Terminate,
        ProcessStatus::Ending => {
            let grace = view
                .fleet
                .map(|f| f.process_ending_grace_ms)
                .unwrap_or(120_000);
            let deadline = p.ending_since.unwrap_or(now).saturating_add(grace);
            if now >= deadline {
                ProcessDue::KillNow
            } else {
                ProcessDue::KillAt(deadline)
            }
        }
        ProcessStatus::Launching | ProcessStatus::Ready => ProcessDue::Idle,
    }
}

/// What [`battle_session_spec`] reads: the sessions, processes, placements
/// and players' sessions.
#[derive(Clone, Copy)]
pub struct SessionSpecView<'a> {
    pub battle_sessions: &'a BTreeMap<BattleSessionId, Shared<BattleSession>>,
    pub processes: &'a BTreeMap<ProcessId, Shared<DsProcess>>,
    pub placements: &'a BTreeMap<PlacementId, Shared<Placement>>,
    pub player_battle_sessions: &'a BTreeMap<PlayerBattleSessionId, Shared<PlayerBattleSession>>,
}

impl<'a> SessionSpecView<'a> {
    pub fn of(state: &'a ClusterState) -> Self {
        SessionSpecView {
            battle_sessions: &state.battle_sessions,
            processes: &state.processes,
            placements: &state.placements,
            player_battle_sessions: &state.player_battle_sessions,
        }
    }
}

/// The OnStartBattleSession payload for a session assigned to a process.
pub fn battle_session_spec(
    state: SessionSpecView<'_>,
    id: &BattleSessionId,
) -> Option<(ProcessId, HostId, agent::BattleSessionSpec)> {
    let s = state.battle_sessions.get(id)?;
    let process_id = s.process_id.clone()?;
    let process = state.processes.get(&process_id)?;
    let placement = state.placements.get(&s.placement_id)?;
    let players = placement
        .player_battle_sessions
        .iter()
        .filter_map(|pbs| state.player_battle_sessions.get(pbs).map(|r| &**r))
        .filter(|p| p.status != PlayerBattleSessionStatus::Completed)
        .map(|p| agent::PlayerSlot {
            player_id: p.player_id.clone(),
            player_battle_session_id: p.id.clone(),
            player_data: p.player_data.clone(),
            team: p.team.clone(),
        })
        .collect::<Vec<_>>();
    Some((
        process_id,
        process.host_id.clone(),
        agent::BattleSessionSpec {
            battle_session_id: s.id.clone(),
            placement_id: s.placement_id.clone(),
            title_region_id: s.title_region_id.clone(),
            fleet_id: s.fleet_id.clone(),
            max_players: s.max_players,
            properties: s.properties.clone(),
            teams: agent::Team::of(&players),
            players,
            ip: process.ip.clone(),
            port: process.port.unwrap_or(0),
        },
    ))
}

/// Backoff for retrying a delivery to an agent: 100 ms doubling to 5 s.
pub fn agent_retry_delay(attempt: u32) -> Duration {
    capped_exponential(Duration::from_millis(100), Duration::from_secs(5), attempt)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use respawn_state::{Request, StartPlacement};

    const T0: UnixMillis = 5_000_000;

    fn id<T>(f: fn(String) -> T, s: &str) -> T {
        f(s.to_string())
    }

    /// A state with a title region `tr`, a fleet `f` and hosts `h1`, `h2`
    /// (also used by the autoscaler's tests).
    pub(crate) struct W {
        pub(crate) s: ClusterState,
        at: UnixMillis,
    }

    impl W {
        pub(crate) fn new(mode: ServerMode) -> Self {
            let mut w = W {
                s: ClusterState::default(),
                at: T0,
            };
            w.ok(Command::PutTitleRegion(TitleRegion {
                id: TitleRegionId::new_unchecked("tr"),
                title_id: TitleId::new_unchecked("t"),
                name: "r".into(),
                title_name: "g".into(),
                secret_id: SecretId::new_unchecked("s"),
                secret_key: "k".repeat(20),
            }));
            w.ok(Command::PutFleet(Fleet {
                id: FleetId::new_unchecked("f"),
                title_region_id: TitleRegionId::new_unchecked("tr"),
                name: "f".into(),
                mode,
                runtime: RuntimeConfig {
                    launch_path: "x".into(),
                    args: vec![],
                    env: Default::default(),
                    processes_per_host: 4,
                },
                activation_timeout_ms: 10_000,
                placement_timeout_ms: 30_000,
                health_check_interval_ms: 5_000,
                process_ending_grace_ms: 120_000,
                max_placement_attempts: 3,
                scaling: Default::default(),
                labels: Default::default(),
                version: 0,
                updated_at: 0,
                host_target: None,
            }));
            for h in ["h1", "h2"] {
                w.ok(Command::RegisterHost {
                    host: Host {
                        id: HostId::new_unchecked(h),
                        fleet_id: FleetId::new_unchecked("f"),
                        ip: "1.2.3.4".into(),
                        registered_at: 0,
                    },
                    live: vec![],
                    live_vs: vec![],
                });
            }
            w
        }
        pub(crate) fn ok(&mut self, c: Command) {
            let (r, _) = self.s.apply(&Request {
                at: self.at,
                command: c,
            });
            assert!(r.is_ok(), "{r:?}");
            self.at += 1;
        }
        pub(crate) fn process(&mut self, name: &str, host: &str) {
            self.ok(Command::ProcessStarted {
                process_id: ProcessId::new_unchecked(name),
                host_id: HostId::new_unchecked(host),
                pid: 1,
                fleet_version: 0,
            });
            self.ok(Command::ProcessReady {
                process_id: ProcessId::new_unchecked(name),
                port: 9000,
                log_paths: vec![],
            });
        }
        fn placement(&mut self, n: &str) {
            self.ok(Command::IssueBattleSessionId {
                title_region_id: TitleRegionId::new_unchecked("tr"),
                battle_session_id: BattleSessionId::new_unchecked(n),
                max_outstanding: None,
            });
            self.ok(Command::StartPlacement(StartPlacement {
                placement_id: PlacementId::new_unchecked(n),
                title_region_id: TitleRegionId::new_unchecked("tr"),
                fleet_id: FleetId::new_unchecked("f"),
                battle_session_id: BattleSessionId::new_unchecked(n),
                max_players: 2,
                properties: Default::default(),
                players: vec![],
                timeout_ms: None,
            }));
        }
        fn plan(
            &self,
            in_flight: &HashMap<ProcessId, u32>,
            connected: &[&str],
        ) -> Vec<(String, String)> {
            let fleet = FleetView::of(&self.s, &FleetId::new_unchecked("f")).unwrap();
            plan_assignments(
                fleet,
                &HashSet::new(),
                in_flight,
                |h| connected.contains(&h.as_str()),
                100,
            )
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
        }
    }

    #[test]
    fn simple_mode_one_placement_per_process_oldest_first() {
        let mut w = W::new(ServerMode::Simple);
        w.process("p1", "h1");
        w.process("p2", "h2");
        w.placement("a");
        w.placement("b");
        w.placement("c");
        let plan = w.plan(&HashMap::new(), &["h1", "h2"]);
        assert_eq!(
            plan,
            vec![("a".into(), "p1".into()), ("b".into(), "p2".into())]
        );
        // In-flight assignments count as taken.
        let busy = HashMap::from([(ProcessId::new_unchecked("p1"), 1)]);
        assert_eq!(
            w.plan(&busy, &["h1", "h2"]),
            vec![("a".into(), "p2".into())]
        );
        // Disconnected hosts are skipped.
        assert_eq!(
            w.plan(&HashMap::new(), &["h2"]),
            vec![("a".into(), "p2".into())]
        );
        assert!(w.plan(&HashMap::new(), &[]).is_empty());
        let _ = id(PlacementId::new_unchecked, "x");
    }

    #[test]
    fn parallel_mode_packs_busiest_process_first() {
        let mut w = W::new(ServerMode::Parallel { max_sessions: 2 });
        w.process("p1", "h1");
        w.process("p2", "h2");
        w.placement("a");
        w.ok(Command::AssignPlacement {
            placement_id: PlacementId::new_unchecked("a"),
            process_id: ProcessId::new_unchecked("p2"),
        });
        w.placement("b");
        w.placement("c");
        w.placement("d");
        let plan = w.plan(&HashMap::new(), &["h1", "h2"]);
        // p2 holds one session already: it is filled first, then p1.
        assert_eq!(
            plan,
            vec![
                ("b".into(), "p2".into()),
                ("c".into(), "p1".into()),
                ("d".into(), "p1".into())
            ]
        );
    }

    #[test]
    fn session_timers() {
        let mut w = W::new(ServerMode::Simple);
        w.process("p1", "h1");
        w.placement("a");
        let bs = BattleSessionId::new_unchecked("a");
        let deadline = w.s.placements[&PlacementId::new_unchecked("a")].deadline;
        assert_eq!(
            session_due(SessionView::of(&w.s, &bs), w.at),
            SessionDue::At(deadline)
        );
        assert_eq!(
            session_due(SessionView::of(&w.s, &bs), deadline),
            SessionDue::Now(Box::new(Command::PlacementTimedOut {
                placement_id: PlacementId::new_unchecked("a")
            }))
        );
        w.ok(Command::AssignPlacement {
            placement_id: PlacementId::new_unchecked("a"),
            process_id: ProcessId::new_unchecked("p1"),
        });
        let act = w.s.battle_sessions[&bs]
            .activation_deadline
            .unwrap_or_default();
        assert_eq!(
            session_due(SessionView::of(&w.s, &bs), w.at),
            SessionDue::At(act)
        );
        assert_eq!(
            session_due(SessionView::of(&w.s, &bs), act + 1),
            SessionDue::Now(Box::new(Command::ActivationTimedOut {
                battle_session_id: bs.clone(),
                process_id: ProcessId::new_unchecked("p1")
            }))
        );
        w.ok(Command::ActivateBattleSession {
            process_id: ProcessId::new_unchecked("p1"),
            battle_session_id: bs.clone(),
        });
        assert_eq!(
            session_due(SessionView::of(&w.s, &bs), w.at),
            SessionDue::Finished,
            "an ACTIVE session has no deadline: its actor stops"
        );
        w.ok(Command::ProcessEnding {
            process_id: ProcessId::new_unchecked("p1"),
        });
        assert_eq!(
            session_due(SessionView::of(&w.s, &bs), w.at),
            SessionDue::Finished
        );
        assert_eq!(
            session_due(
                SessionView::of(&w.s, &BattleSessionId::new_unchecked("zz")),
                0
            ),
            SessionDue::Finished
        );
    }

    #[test]
    fn process_timers() {
        let mut w = W::new(ServerMode::Simple);
        w.process("p1", "h1");
        let p = ProcessId::new_unchecked("p1");
        assert_eq!(
            process_due(ProcessView::of(&w.s, &p), w.at),
            ProcessDue::Idle
        );
        w.ok(Command::ProcessEnding {
            process_id: p.clone(),
        });
        let since = w.s.processes[&p].ending_since.unwrap_or_default();
        assert_eq!(
            process_due(ProcessView::of(&w.s, &p), since),
            ProcessDue::KillAt(since + 120_000)
        );
        assert_eq!(
            process_due(ProcessView::of(&w.s, &p), since + 120_000),
            ProcessDue::KillNow
        );
        w.ok(Command::ProcessExited {
            process_id: p.clone(),
            reason: ExitReason::Killed,
        });
        assert_eq!(
            process_due(ProcessView::of(&w.s, &p), w.at),
            ProcessDue::Finished
        );
        w.process("p2", "h1");
        w.ok(Command::ProcessTerminating {
            process_id: ProcessId::new_unchecked("p2"),
            reason: "x".into(),
        });
        assert_eq!(
            process_due(ProcessView::of(&w.s, &ProcessId::new_unchecked("p2")), w.at),
            ProcessDue::Terminate
        );
    }

    #[test]
    fn spec_lists_live_players_and_address() {
        let mut w = W::new(ServerMode::Simple);
        w.process("p1", "h1");
        w.placement("a");
        assert!(battle_session_spec(
            SessionSpecView::of(&w.s),
            &BattleSessionId::new_unchecked("a")
        )
        .is_none());
        w.ok(Command::AssignPlacement {
            placement_id: PlacementId::new_unchecked("a"),
            process_id: ProcessId::new_unchecked("p1"),
        });
        let (p, h, spec) = battle_session_spec(
            SessionSpecView::of(&w.s),
            &BattleSessionId::new_unchecked("a"),
        )
        .unwrap();
        assert_eq!(
            (p.as_str(), h.as_str(), spec.port, spec.ip.as_str()),
            ("p1", "h1", 9000, "1.2.3.4")
        );
    }

    #[test]
    fn retry_backoff_is_bounded() {
        assert_eq!(agent_retry_delay(0), Duration::from_millis(100));
        assert_eq!(agent_retry_delay(3), Duration::from_millis(800));
        assert_eq!(agent_retry_delay(50), Duration::from_millis(5_000));
    }
}
