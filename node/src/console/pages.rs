//! The cluster, fleets, placements, players and DS process pages (one
//! fleet's page is [`super::fleet`]'s). Each reads the state
//! linearizably (read index, like the admin API) and shows only what the
//! session's scope may see; a record of another title region is answered
//! 404, exactly like a missing one.

use super::auth::Me;
use super::{page, ConsoleState, PageError};
use crate::edge::fleet_scaling_view::{scaling_view, ScalingView};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use respawn_actors::AgentGateway;
use respawn_console::views::{self, fleets, placements, processes};
use respawn_types::HostId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Serialize)]
struct MemberRow {
    node_id: u64,
    role: &'static str,
    quic_addr: String,
    http_addr: String,
    /// Log index known replicated to it (the leader knows).
    matched: Option<u64>,
}

#[derive(Serialize)]
struct RaftInfo {
    node_id: u64,
    leader: Option<u64>,
    state: String,
    term: u64,
    last_log_index: Option<u64>,
    applied_index: Option<u64>,
    snapshot_index: Option<u64>,
    ready: bool,
    members: Vec<MemberRow>,
}

fn raft_info(c: &ConsoleState) -> RaftInfo {
    let consensus = &c.edge.server.cluster.consensus;
    let m = consensus.membership();
    let metrics = consensus.metrics().borrow().clone();
    let replication = metrics.replication.clone().unwrap_or_default();
    RaftInfo {
        node_id: consensus.node_id(),
        leader: metrics.current_leader,
        state: format!("{:?}", metrics.state),
        term: metrics.current_term,
        last_log_index: metrics.last_log_index,
        applied_index: metrics.last_applied.map(|l| l.index),
        snapshot_index: metrics.snapshot.map(|l| l.index),
        ready: metrics.current_leader.is_some(),
        members: m
            .nodes
            .iter()
            .map(|(id, info)| MemberRow {
                node_id: *id,
                role: if m.voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                },
                quic_addr: info.raft_addr.clone(),
                http_addr: info.http_addr.clone(),
                matched: replication
                    .get(id)
                    .and_then(|l| l.as_ref().map(|l| l.index)),
            })
            .collect(),
    }
}

/// Hosts whose agent is linked now (to this node or, as committed, another).
pub(super) fn connected(c: &ConsoleState, hosts: Vec<HostId>) -> BTreeSet<HostId> {
    let gateway = c.edge.server.gateway();
    hosts
        .into_iter()
        .filter(|h| gateway.is_connected(h))
        .collect()
}

pub(super) async fn host_ids(c: &ConsoleState) -> Result<Vec<HostId>, PageError> {
    Ok(c.edge
        .server
        .cluster
        .read(|s| s.hosts.keys().cloned().collect())
        .await?)
}

/// `GET /console/cluster`: nodes, leader, Raft term and indexes, health,
/// agents and their hosts.
pub async fn cluster(State(c): State<ConsoleState>, me: Me) -> Result<Response, PageError> {
    let linked = connected(&c, host_ids(&c).await?);
    let hosts = c
        .edge
        .server
        .cluster
        .read(|s| fleets::hosts(s, me.scope(), &linked, None))
        .await?;
    let raft = raft_info(&c);
    page(
        &c,
        &me,
        "cluster.html",
        "Cluster",
        "cluster",
        minijinja::context! { raft, hosts },
    )
}

/// `GET /console/fleets`: each fleet's figures, scaling policy, desired
/// processes and hosts, and the autoscaler's last action.
pub async fn fleets(State(c): State<ConsoleState>, me: Me) -> Result<Response, PageError> {
    // Each fleet with the autoscaler's view of it, as the admin API gives it.
    let fleets: Vec<(fleets::FleetRow, ScalingView)> = c
        .edge
        .server
        .cluster
        .read(|s| {
            fleets::fleets(s, me.scope())
                .into_iter()
                .filter_map(|row| {
                    let f = s
                        .fleets
                        .get(&respawn_types::FleetId::new_unchecked(row.id.as_str()))?;
                    Some((row, scaling_view(s, f, |st| views::status_name(&st))))
                })
                .collect()
        })
        .await?;
    let fleets: Vec<_> = fleets
        .into_iter()
        .map(|(f, scaling)| minijinja::context! { scaling, ..minijinja::Value::from_serialize(&f) })
        .collect();
    page(
        &c,
        &me,
        "fleets.html",
        "Fleets",
        "fleets",
        minijinja::context! { fleets },
    )
}

/// `GET /console/placements?status=&fleet=&q=`.
pub async fn placements(
    State(c): State<ConsoleState>,
    me: Me,
    q: Result<Query<placements::PlacementFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let filter = q.map(|Query(f)| f).unwrap_or_default();
    let (list, fleet_ids) = c
        .edge
        .server
        .cluster
        .read(|s| {
            let fleet_ids: Vec<String> = s
                .fleets
                .values()
                .filter(|f| me.scope().sees(&f.title_region_id))
                .map(|f| f.id.to_string())
                .collect();
            (placements::placements(s, me.scope(), &filter), fleet_ids)
        })
        .await?;
    page(
        &c,
        &me,
        "placements.html",
        "Placements",
        "placements",
        minijinja::context! {
            list,
            fleets => fleet_ids,
            filter => minijinja::context! { status => filter.status, fleet => filter.fleet, q => filter.q },
        },
    )
}

/// `GET /console/placements/{id}`: its session, address, players and timeline.
pub async fn placement(
    State(c): State<ConsoleState>,
    me: Me,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let found = c
        .edge
        .server
        .cluster
        .read(|s| placements::placement_page(s, me.scope(), &id))
        .await?;
    let p = found.ok_or_else(|| PageError::NotFound(format!("placement '{id}' not found")))?;
    page(
        &c,
        &me,
        "placement.html",
        "Placement",
        "placements",
        minijinja::context! { page => p },
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct PlayerQuery {
    #[serde(default)]
    pub player: String,
}

/// `GET /console/players?player=`: a player's battle sessions, past and present.
pub async fn players(
    State(c): State<ConsoleState>,
    me: Me,
    q: Result<Query<PlayerQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let player = q.map(|Query(p)| p.player).unwrap_or_default();
    let list = if player.trim().is_empty() {
        views::Rows::cut(Vec::new())
    } else {
        c.edge
            .server
            .cluster
            .read(|s| placements::player_sessions(s, me.scope(), &player))
            .await?
    };
    page(
        &c,
        &me,
        "players.html",
        "Players",
        "players",
        minijinja::context! { player, list },
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct ProcessQuery {
    /// The log file whose tail the page shows.
    pub file: Option<String>,
}

/// `GET /console/processes/{id}?file=`: a DS process's state, host,
/// sessions, timeline, and its logs (the files its host keeps, and the
/// tail of one).
pub async fn process(
    State(c): State<ConsoleState>,
    me: Me,
    Path(id): Path<String>,
    q: Result<Query<ProcessQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let asked = q.map(|Query(q)| q.file).unwrap_or_default();
    let found = c
        .edge
        .server
        .cluster
        .read(|s| processes::process_page(s, me.scope(), &id))
        .await?;
    let p = found.ok_or_else(|| PageError::NotFound(format!("DS process '{id}' not found")))?;
    let logs = super::ds_logs::section(&c, &p.title_region_id, &id, asked.as_deref()).await?;
    page(
        &c,
        &me,
        "process.html",
        "DS process",
        "fleets",
        minijinja::context! { page => p, logs, max_sessions => processes::MAX_SESSIONS },
    )
}
