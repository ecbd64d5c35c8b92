//! Per-fleet gauges on `/metrics`, rendered from this node's applied state
//! (so every node shows them, as of its last applied entry): processes by
//! state and version, sessions by state, available slots, waiting
//! placements, desired processes and hosts, and the autoscaler's decisions.

use super::fleet_scaling_view::scaling_view;
use respawn_state::ClusterState;
use respawn_types::*;
use std::collections::BTreeMap;
use std::fmt::Write;

fn status(s: ProcessStatus) -> &'static str {
    match s {
        ProcessStatus::Launching => "LAUNCHING",
        ProcessStatus::Ready => "READY",
        ProcessStatus::Ending => "ENDING",
        ProcessStatus::Terminating => "TERMINATING",
        ProcessStatus::Exited => "EXITED",
    }
}

/// Escapes a label value.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The per-fleet metrics in Prometheus text format.
pub fn render(s: &ClusterState) -> String {
    let mut families: BTreeMap<&str, (&str, &str, Vec<String>)> = BTreeMap::new();
    let mut add = |name: &'static str, kind: &'static str, help: &'static str, line: String| {
        families
            .entry(name)
            .or_insert((kind, help, Vec::new()))
            .2
            .push(line);
    };
    for f in s.fleets.values() {
        let fl = format!("fleet=\"{}\"", esc(f.id.as_str()));
        let mut procs: BTreeMap<(&str, u64), u32> = BTreeMap::new();
        let (mut activating, mut active) = (0u32, 0u32);
        for p in s.live_processes(&f.id) {
            *procs
                .entry((status(p.status), p.fleet_version))
                .or_default() += 1;
            for b in s.sessions_on(&p.id) {
                match b.status {
                    BattleSessionStatus::Activating => activating += 1,
                    BattleSessionStatus::Active => active += 1,
                    _ => {}
                }
            }
        }
        for ((st, v), n) in procs {
            add(
                "respawn_fleet_processes",
                "gauge",
                "Live DS processes by state and fleet version",
                format!("{{{fl},state=\"{st}\",version=\"{v}\"}} {n}"),
            );
        }
        for (st, n) in [("ACTIVATING", activating), ("ACTIVE", active)] {
            add(
                "respawn_fleet_sessions",
                "gauge",
                "Battle sessions by state",
                format!("{{{fl},state=\"{st}\"}} {n}"),
            );
        }
        let slots: u32 = s
            .placeable_processes(&f.id)
            .map(|p| match f.mode {
                ServerMode::Simple | ServerMode::Forking => 1,
                ServerMode::Parallel { max_sessions } => {
                    max_sessions.saturating_sub(p.sessions_current)
                }
            })
            .sum();
        add(
            "respawn_fleet_available_slots",
            "gauge",
            "Sessions the fleet could take now",
            format!("{{{fl}}} {slots}"),
        );
        add(
            "respawn_fleet_waiting_placements",
            "gauge",
            "Placements waiting for a process",
            format!("{{{fl}}} {}", s.waiting_placements(&f.id).count()),
        );
        let view = scaling_view(s, f, |p| status(p).to_owned());
        add(
            "respawn_fleet_desired_processes",
            "gauge",
            "Processes the fleet should run (autoscaler)",
            format!("{{{fl}}} {}", view.desired_processes),
        );
        add(
            "respawn_fleet_desired_hosts",
            "gauge",
            "Hosts needed: desired processes / processes_per_host, rounded up",
            format!("{{{fl}}} {}", view.desired_hosts),
        );
        add(
            "respawn_fleet_autoscaler_decisions_total",
            "counter",
            "Autoscaler decisions committed",
            format!("{{{fl}}} {}", view.decisions),
        );
    }
    let mut out = String::new();
    for (name, (kind, help, lines)) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for l in lines {
            let _ = writeln!(out, "{name}{l}");
        }
    }
    out
}
