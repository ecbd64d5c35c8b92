//! Placements and battle sessions: the filtered list, one placement's page
//! (its session, address, players and timeline) and a player's sessions.

use super::{status_name, time, time_ms, Rows, Scope};
use respawn_state::ClusterState;
use respawn_types::*;
use serde::{Deserialize, Serialize};

/// The list's filters, from the query string (empty = any).
#[derive(Debug, Default, Deserialize)]
pub struct PlacementFilter {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub fleet: String,
    /// A placement or battle session id, or part of one.
    #[serde(default)]
    pub q: String,
}

#[derive(Debug, Serialize)]
pub struct PlacementRow {
    pub id: String,
    pub status: String,
    pub fleet_id: String,
    pub title_region_id: String,
    pub battle_session_id: String,
    pub session_status: Option<String>,
    pub address: Option<String>,
    pub players: usize,
    pub created_at: String,
}

#[derive(Debug, Serialize)]
pub struct PlayerRow {
    pub player_battle_session_id: String,
    pub player_id: String,
    pub battle_session_id: String,
    pub placement_id: Option<String>,
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
}

/// Something that happened to a placement, its session or its players.
#[derive(Debug, Serialize)]
pub struct TimelineEntry {
    pub at: String,
    pub what: String,
}

#[derive(Debug, Serialize)]
pub struct PlacementPage {
    pub placement: PlacementRow,
    pub reason: Option<String>,
    pub deadline: String,
    pub ended_at: Option<String>,
    pub session: Option<SessionView>,
    pub players: Vec<PlayerRow>,
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Serialize)]
pub struct SessionView {
    pub id: String,
    pub status: String,
    pub process_id: Option<String>,
    pub host_id: Option<String>,
    pub address: Option<String>,
    pub max_players: u32,
    pub attempts: u32,
    pub properties: Vec<(String, String)>,
    pub created_at: String,
    pub terminated_at: Option<String>,
    pub termination_reason: Option<String>,
}

fn address(b: Option<&BattleSession>) -> Option<String> {
    let b = b?;
    Some(format!("{}:{}", b.ip.as_ref()?, b.port?))
}

fn row(s: &ClusterState, p: &Placement) -> PlacementRow {
    let b = s.battle_sessions.get(&p.battle_session_id).map(|b| &**b);
    PlacementRow {
        id: p.id.to_string(),
        status: status_name(&p.status),
        fleet_id: p.fleet_id.to_string(),
        title_region_id: p.title_region_id.to_string(),
        battle_session_id: p.battle_session_id.to_string(),
        session_status: b.map(|b| status_name(&b.status)),
        address: address(b),
        players: p.player_battle_sessions.len(),
        created_at: time(p.created_at),
    }
}

/// The placements a scope sees that match `f`, newest first.
pub fn placements(s: &ClusterState, scope: Scope<'_>, f: &PlacementFilter) -> Rows<PlacementRow> {
    let q = f.q.trim();
    let mut all: Vec<&Placement> = s
        .placements
        .values()
        .map(|r| &**r)
        .filter(|p| scope.sees(&p.title_region_id))
        .filter(|p| f.status.is_empty() || status_name(&p.status) == f.status)
        .filter(|p| f.fleet.is_empty() || p.fleet_id.as_str() == f.fleet)
        .filter(|p| {
            q.is_empty() || p.id.as_str().contains(q) || p.battle_session_id.as_str().contains(q)
        })
        .collect();
    all.sort_by_key(|p| std::cmp::Reverse((p.created_at, p.id.clone())));
    Rows::cut(all.into_iter().map(|p| row(s, p)).collect())
}

fn player_row(s: &ClusterState, p: &PlayerBattleSession) -> PlayerRow {
    PlayerRow {
        player_battle_session_id: p.id.to_string(),
        player_id: p.player_id.to_string(),
        battle_session_id: p.battle_session_id.to_string(),
        placement_id: s
            .battle_sessions
            .get(&p.battle_session_id)
            .map(|b| b.placement_id.to_string()),
        status: status_name(&p.status),
        created_at: time(p.created_at),
        updated_at: time(p.updated_at),
    }
}

/// One placement's page, or `None` if the scope does not see it.
pub fn placement_page(s: &ClusterState, scope: Scope<'_>, id: &str) -> Option<PlacementPage> {
    let p = s
        .placements
        .get(&PlacementId::new_unchecked(id))
        .filter(|p| scope.sees(&p.title_region_id))?;
    let b = s.battle_sessions.get(&p.battle_session_id);
    let players: Vec<&PlayerBattleSession> = p
        .player_battle_sessions
        .iter()
        .filter_map(|id| s.player_battle_sessions.get(id).map(|r| &**r))
        .collect();
    let mut t: Vec<(u64, String)> = vec![(
        p.created_at,
        format!("placement requested in fleet {}", p.fleet_id),
    )];
    if let Some(end) = p.ended_at {
        let why = p
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        t.push((end, format!("placement {}{why}", status_name(&p.status))));
    }
    if let Some(b) = b {
        if let Some(at) = b.terminated_at {
            let why = b
                .termination_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            t.push((at, format!("battle session terminated{why}")));
        }
    }
    for pl in &players {
        t.push((pl.created_at, format!("player {} reserved", pl.player_id)));
        if pl.updated_at > pl.created_at {
            t.push((
                pl.updated_at,
                format!("player {} now {}", pl.player_id, status_name(&pl.status)),
            ));
        }
    }
    t.sort_by_key(|e| e.0);
    let session = b.map(|b| SessionView {
        id: b.id.to_string(),
        status: status_name(&b.status),
        process_id: b.process_id.as_ref().map(|p| p.to_string()),
        host_id: b
            .process_id
            .as_ref()
            .and_then(|id| s.processes.get(id))
            .map(|p| p.host_id.to_string()),
        address: address(Some(b)),
        max_players: b.max_players,
        attempts: b.attempts,
        properties: b
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        created_at: time(b.created_at),
        terminated_at: b.terminated_at.map(time),
        termination_reason: b.termination_reason.clone(),
    });
    Some(PlacementPage {
        placement: row(s, p),
        reason: p.reason.clone(),
        deadline: time(p.deadline),
        ended_at: p.ended_at.map(time),
        session,
        players: players.into_iter().map(|pl| player_row(s, pl)).collect(),
        timeline: t
            .into_iter()
            .map(|(at, what)| TimelineEntry {
                at: time_ms(at),
                what,
            })
            .collect(),
    })
}

/// A player's battle sessions, past and present, newest first.
pub fn player_sessions(s: &ClusterState, scope: Scope<'_>, player: &str) -> Rows<PlayerRow> {
    let player = player.trim();
    let mut all: Vec<&PlayerBattleSession> = s
        .player_battle_sessions
        .values()
        .map(|r| &**r)
        .filter(|p| p.player_id.as_str() == player && scope.sees(&p.title_region_id))
        .collect();
    all.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    Rows::cut(all.into_iter().map(|p| player_row(s, p)).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn state() -> ClusterState {
        let mut s = ClusterState::default();
        for (n, tr, status) in [
            (1, "tr-a", PlacementStatus::Fulfilled),
            (2, "tr-a", PlacementStatus::Pending),
            (3, "tr-b", PlacementStatus::Fulfilled),
        ] {
            let id = PlacementId::new_unchecked(format!("pl-{n}"));
            let bs = BattleSessionId::new_unchecked(format!("bs-{n}"));
            let pbs = PlayerBattleSessionId::new_unchecked(format!("pbs-{n}"));
            s.placements.insert(
                id.clone(),
                Placement {
                    id: id.clone(),
                    title_region_id: TitleRegionId::new_unchecked(tr),
                    fleet_id: FleetId::new_unchecked(format!("fleet-{tr}")),
                    battle_session_id: bs.clone(),
                    status,
                    created_at: 1000 * n,
                    deadline: 1000 * n + 60_000,
                    ended_at: (status != PlacementStatus::Pending).then_some(1000 * n + 5),
                    reason: None,
                    player_battle_sessions: vec![pbs.clone()],
                }
                .into(),
            );
            s.player_battle_sessions.insert(
                pbs.clone(),
                PlayerBattleSession {
                    id: pbs,
                    player_id: PlayerId::new_unchecked("alice"),
                    battle_session_id: bs,
                    title_region_id: TitleRegionId::new_unchecked(tr),
                    status: PlayerBattleSessionStatus::Reserved,
                    player_data: String::new(),
                    team: String::new(),
                    created_at: 1000 * n,
                    updated_at: 1000 * n,
                }
                .into(),
            );
        }
        s
    }

    fn ids(r: &Rows<PlacementRow>) -> Vec<&str> {
        r.rows.iter().map(|p| p.id.as_str()).collect()
    }

    #[test]
    fn lists_filter_by_status_fleet_and_id_newest_first() {
        let s = state();
        let all = Scope(None);
        let f = |status: &str, fleet: &str, q: &str| PlacementFilter {
            status: status.into(),
            fleet: fleet.into(),
            q: q.into(),
        };
        assert_eq!(
            ids(&placements(&s, all, &f("", "", ""))),
            ["pl-3", "pl-2", "pl-1"]
        );
        assert_eq!(
            ids(&placements(&s, all, &f("FULFILLED", "", ""))),
            ["pl-3", "pl-1"]
        );
        assert_eq!(
            ids(&placements(&s, all, &f("", "fleet-tr-a", ""))),
            ["pl-2", "pl-1"]
        );
        assert_eq!(ids(&placements(&s, all, &f("", "", "bs-2"))), ["pl-2"]);
    }

    #[test]
    fn a_region_scope_sees_its_records_only_and_others_as_missing() {
        let s = state();
        let a = TitleRegionId::new_unchecked("tr-a");
        let scope = Scope(Some(&a));
        let r = placements(&s, scope, &PlacementFilter::default());
        assert_eq!(ids(&r), ["pl-2", "pl-1"]);
        assert!(placement_page(&s, scope, "pl-3").is_none());
        assert!(placement_page(&s, scope, "pl-404").is_none());
        let page = placement_page(&s, scope, "pl-1").unwrap();
        assert_eq!(page.placement.status, "FULFILLED");
        assert_eq!(page.timeline.len(), 3, "{:?}", page.timeline);
        let mine = player_sessions(&s, scope, "alice");
        assert_eq!(mine.matched, 2);
        assert_eq!(player_sessions(&s, Scope(None), "alice").matched, 3);
    }
}
