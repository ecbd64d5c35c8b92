//! The shared fixture of the transition tests: ids, a fleet, and [`H`], a
//! state with a title region, a fleet and a host, whose `run` checks after
//! every command that the placeable index equals what it indexes.

use crate::*;
use respawn_types::*;
use std::collections::{BTreeMap, BTreeSet};

pub(crate) const T0: UnixMillis = 1_000_000;

pub(crate) fn tr() -> TitleRegionId {
    TitleRegionId::new_unchecked("tr-1")
}
pub(crate) fn fleet_id() -> FleetId {
    FleetId::new_unchecked("fleet-1")
}
pub(crate) fn host_id() -> HostId {
    HostId::new_unchecked("host-1")
}
pub(crate) fn pid(n: u32) -> ProcessId {
    ProcessId::new_unchecked(format!("proc-{n}"))
}
pub(crate) fn bs(n: u32) -> BattleSessionId {
    BattleSessionId::new_unchecked(format!("bs-{n}"))
}
pub(crate) fn pl(n: u32) -> PlacementId {
    PlacementId::new_unchecked(format!("pl-{n}"))
}
pub(crate) fn pbs(n: u32) -> PlayerBattleSessionId {
    PlayerBattleSessionId::new_unchecked(format!("pbs-{n}"))
}
pub(crate) fn player(n: u32) -> PlayerSpec {
    PlayerSpec {
        team: String::new(),
        player_id: PlayerId::new_unchecked(format!("player-{n}")),
        player_data: String::new(),
    }
}

pub(crate) fn fleet(mode: ServerMode) -> Fleet {
    Fleet {
        id: fleet_id(),
        title_region_id: tr(),
        name: "f".into(),
        mode,
        runtime: RuntimeConfig {
            launch_path: "/bin/ds".into(),
            args: vec![],
            env: Default::default(),
            processes_per_host: 2,
        },
        activation_timeout_ms: 60_000,
        placement_timeout_ms: 120_000,
        health_check_interval_ms: 5_000,
        process_ending_grace_ms: 120_000,
        max_placement_attempts: 2,
        scaling: Default::default(),
        labels: Default::default(),
        version: 0,
        updated_at: 0,
        host_target: None,
    }
}

/// A state under test and the clock its commands are stamped with.
pub(crate) struct H {
    pub(crate) s: ClusterState,
    pub(crate) at: UnixMillis,
}

impl H {
    pub(crate) fn new(mode: ServerMode) -> Self {
        let mut h = H {
            s: ClusterState::default(),
            at: T0,
        };
        h.ok(Command::PutTitleRegion(TitleRegion {
            id: tr(),
            title_id: TitleId::new_unchecked("title-1"),
            name: "dev".into(),
            title_name: "Game".into(),
            secret_id: SecretId::new_unchecked("sid-1"),
            secret_key: "0123456789abcdef0123".into(),
        }));
        h.ok(Command::PutFleet(fleet(mode)));
        h.ok(Command::RegisterHost {
            host: Host {
                id: host_id(),
                fleet_id: fleet_id(),
                ip: "10.0.0.1".into(),
                registered_at: 0,
            },
            live: vec![],
            live_vs: vec![],
        });
        h
    }
    pub(crate) fn run(&mut self, c: Command) -> (Response, Vec<Event>) {
        let out = self.s.apply(&Request {
            at: self.at,
            command: c,
        });
        // The placeable index always equals what it indexes.
        let mut expected: BTreeMap<FleetId, BTreeSet<ProcessId>> = BTreeMap::new();
        for p in self.s.processes.values().filter(|p| self.s.is_placeable(p)) {
            expected
                .entry(p.fleet_id.clone())
                .or_default()
                .insert(p.id.clone());
        }
        assert_eq!(
            self.s.placeable_by_fleet, expected,
            "placeable index out of date"
        );
        out
    }
    pub(crate) fn ok(&mut self, c: Command) -> Vec<Event> {
        let (r, e) = self.run(c.clone());
        assert!(r.is_ok(), "{c:?} rejected: {r:?}");
        e
    }
    /// The command is refused and the state is exactly as before.
    pub(crate) fn refused(&mut self, c: Command) -> Rejection {
        let before = self.s.clone();
        let (r, e) = self.run(c.clone());
        assert!(e.is_empty());
        assert_eq!(self.s, before, "{c:?} changed state although rejected");
        r.expect_err(&format!("{c:?} should be rejected"))
    }
    pub(crate) fn ready_process(&mut self, n: u32) {
        self.ok(Command::ProcessStarted {
            process_id: pid(n),
            host_id: host_id(),
            pid: 100 + n,
            fleet_version: 0,
        });
        self.ok(Command::ProcessReady {
            process_id: pid(n),
            port: 7000 + n as u16,
            log_paths: vec![],
        });
    }
    pub(crate) fn start(
        &mut self,
        n: u32,
        players: Vec<(PlayerBattleSessionId, PlayerSpec)>,
    ) -> Vec<Event> {
        self.ok(Command::IssueBattleSessionId {
            title_region_id: tr(),
            battle_session_id: bs(n),
            max_outstanding: None,
        });
        self.ok(Command::StartPlacement(StartPlacement {
            placement_id: pl(n),
            title_region_id: tr(),
            fleet_id: fleet_id(),
            battle_session_id: bs(n),
            max_players: 4,
            properties: Default::default(),
            players,
            timeout_ms: None,
        }))
    }
    pub(crate) fn session(&self, n: u32) -> &BattleSession {
        &self.s.battle_sessions[&bs(n)]
    }
    pub(crate) fn placement(&self, n: u32) -> &Placement {
        &self.s.placements[&pl(n)]
    }
    pub(crate) fn process(&self, n: u32) -> &DsProcess {
        &self.s.processes[&pid(n)]
    }
    pub(crate) fn player_status(&self, n: u32) -> PlayerBattleSessionStatus {
        self.s.player_battle_sessions[&pbs(n)].status
    }
    pub(crate) fn active_session(&mut self, n: u32, process: u32) {
        self.start(n, vec![(pbs(n * 10), player(n * 10))]);
        self.ok(Command::AssignPlacement {
            placement_id: pl(n),
            process_id: pid(process),
        });
        self.ok(Command::ActivateBattleSession {
            process_id: pid(process),
            battle_session_id: bs(n),
        });
    }
}

// ----- virtual servers

pub(crate) fn vs_name(s: &str) -> VsName {
    VsName::parse(s).unwrap()
}
pub(crate) fn vsi(n: u32) -> VsInstanceId {
    VsInstanceId::new_unchecked(format!("vsi-{n}"))
}
pub(crate) fn vs_spec() -> VsSpec {
    VsSpec {
        source: VsSource::Process {
            command: "python3".into(),
        },
        args: vec![],
        env: Default::default(),
        listen_port: 8080,
        cpu_millicores: 500,
        memory_mb: 128,
        max_instances: 3,
        block_client_requests: false,
        access_log: false,
        metric_urls: vec![],
        target_concurrency: 10,
        scale_down_delay_secs: 60,
        storages: Vec::new(),
    }
}

impl H {
    pub(crate) fn put_vs(&mut self, spec: VsSpec) -> Vec<Event> {
        self.ok(Command::PutVirtualServer {
            title_region_id: tr(),
            name: vs_name("vs-a"),
            spec,
        })
    }
    pub(crate) fn place_vs(&mut self, n: u32, version: u64) -> Vec<Event> {
        self.ok(Command::PlaceVsInstance {
            instance_id: vsi(n),
            title_region_id: tr(),
            name: vs_name("vs-a"),
            version,
            host_id: host_id(),
        })
    }
    pub(crate) fn report(&mut self, n: u32, report: VsInstanceReport) -> (Response, Vec<Event>) {
        self.run(Command::ReportVsInstance {
            instance_id: vsi(n),
            host_id: host_id(),
            report,
        })
    }
    pub(crate) fn vs(&self) -> &VirtualServer {
        self.s.virtual_server(&tr(), &vs_name("vs-a")).unwrap()
    }
}
