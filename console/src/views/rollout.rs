//! A fleet's processes by version, for the fleet page's rollout table: how
//! far a rolling update has come (processes of older versions idle, busy,
//! ending or ended, against the current version's).

use respawn_state::ClusterState;
use respawn_types::*;
use serde::Serialize;

/// The processes of one fleet version.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct VersionRow {
    pub version: u64,
    /// New processes launch with this version.
    pub current: bool,
    /// LAUNCHING (ProcessReady not called yet).
    pub launching: u32,
    /// READY and holding no session: placeable now (the current version), or
    /// about to be stopped and replaced (an older one).
    pub idle: u32,
    /// Holding battle sessions (READY, or in parallel mode any live state):
    /// an older version's busy processes finish before they are replaced.
    pub busy: u32,
    /// ENDING or TERMINATING without a session.
    pub ending: u32,
    /// EXITED, among the records the cluster still keeps (retention prunes
    /// the oldest).
    pub exited: u32,
}

impl VersionRow {
    /// Processes of this version not exited.
    pub fn live(&self) -> u32 {
        self.launching + self.idle + self.busy + self.ending
    }
}

/// Fleet `fleet`'s processes by version, newest version first; the current
/// version always has a row, even with no process yet.
pub fn versions(s: &ClusterState, fleet: &FleetId) -> Vec<VersionRow> {
    let Some(f) = s.fleets.get(fleet) else {
        return Vec::new();
    };
    let mut rows: std::collections::BTreeMap<u64, VersionRow> = std::collections::BTreeMap::new();
    rows.insert(
        f.version,
        VersionRow {
            version: f.version,
            current: true,
            ..VersionRow::default()
        },
    );
    for p in s.processes.values().filter(|p| &p.fleet_id == fleet) {
        let row = rows.entry(p.fleet_version).or_insert_with(|| VersionRow {
            version: p.fleet_version,
            ..VersionRow::default()
        });
        match p.status {
            ProcessStatus::Exited => row.exited += 1,
            _ if p.sessions_current > 0 => row.busy += 1,
            ProcessStatus::Launching => row.launching += 1,
            ProcessStatus::Ready => row.idle += 1,
            ProcessStatus::Ending | ProcessStatus::Terminating => row.ending += 1,
        }
    }
    rows.into_values().rev().collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn process(n: u32, version: u64, status: ProcessStatus, sessions: u32) -> DsProcess {
        DsProcess {
            id: ProcessId::new_unchecked(format!("p-{n}")),
            fleet_id: FleetId::new_unchecked("f"),
            host_id: HostId::new_unchecked("h"),
            status,
            ip: "10.0.0.1".into(),
            port: None,
            log_paths: Vec::new(),
            pid: None,
            sessions_hosted: sessions,
            sessions_current: sessions,
            launched_at: 1000,
            ending_since: None,
            exit: None,
            exited_at: None,
            fleet_version: version,
            role: ProcessRole::default(),
        }
    }

    /// Fleet `f` at `version`.
    fn state_with_fleet(version: u64) -> ClusterState {
        let def: FleetDefinition =
            serde_json::from_value(serde_json::json!({"launch_path": "/bin/ds"})).unwrap();
        let mut f = def.to_fleet(
            FleetId::new_unchecked("f"),
            TitleRegionId::new_unchecked("tr"),
        );
        f.version = version;
        let mut s = ClusterState::default();
        s.fleets.insert(f.id.clone(), f);
        s
    }

    #[test]
    fn a_rollout_counts_each_version_by_what_its_processes_do() {
        let mut s = state_with_fleet(3);
        let mut other = process(99, 1, ProcessStatus::Ready, 0);
        other.fleet_id = FleetId::new_unchecked("g");
        for p in [
            process(1, 2, ProcessStatus::Ready, 0),
            process(2, 2, ProcessStatus::Ready, 1),
            process(3, 2, ProcessStatus::Ending, 0),
            process(4, 2, ProcessStatus::Exited, 0),
            process(5, 1, ProcessStatus::Exited, 0),
            process(6, 3, ProcessStatus::Launching, 0),
            process(7, 3, ProcessStatus::Ready, 0),
            process(8, 3, ProcessStatus::Terminating, 2),
            other,
        ] {
            s.processes.insert(p.id.clone(), p.into());
        }
        let rows = versions(&s, &FleetId::new_unchecked("f"));
        assert_eq!(
            rows,
            vec![
                VersionRow {
                    version: 3,
                    current: true,
                    launching: 1,
                    idle: 1,
                    busy: 1,
                    ending: 0,
                    exited: 0,
                },
                VersionRow {
                    version: 2,
                    current: false,
                    launching: 0,
                    idle: 1,
                    busy: 1,
                    ending: 1,
                    exited: 1,
                },
                VersionRow {
                    version: 1,
                    exited: 1,
                    ..VersionRow::default()
                },
            ]
        );
        assert_eq!(rows[1].live(), 3);
    }

    #[test]
    fn the_current_version_has_a_row_before_any_process() {
        let s = state_with_fleet(1);
        let rows = versions(&s, &FleetId::new_unchecked("f"));
        assert_eq!(rows.len(), 1);
        assert!(rows[0].current && rows[0].live() == 0);
        assert!(versions(&s, &FleetId::new_unchecked("missing")).is_empty());
    }
}
