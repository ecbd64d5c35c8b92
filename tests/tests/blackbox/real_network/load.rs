//! Placement load on the real network: backends placing through every
//! server in turn, and a watcher describing what they placed, all
//! recorded in a [`History`] for the checker.

use super::procs::{edge, SERVERS};
use respawn_tests::history::{Entry, History, Observation};
use respawn_tests::Backend;
use respawn_types::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Backends placing at once.
const PLACERS: usize = 3;
/// Placements in flight that the watcher describes each round, at most.
const WATCHED: usize = 64;

/// The title region of the test's configuration.
#[derive(Clone)]
pub struct Region(TitleRegion);

impl Default for Region {
    fn default() -> Self {
        Region(TitleRegion {
            id: TitleRegionId::new_unchecked("tr-n"),
            title_id: TitleId::new_unchecked("title-n"),
            name: String::new(),
            title_name: String::new(),
            secret_id: SecretId::new_unchecked("sid-n"),
            secret_key: "0123456789abcdef0123456789abcdef".into(),
        })
    }
}

impl Region {
    /// A backend calling server `node`'s edge.
    pub fn backend(&self, node: &str) -> Backend {
        Backend::new(edge(node), &self.0)
    }
}

/// A placement's status in a Describe view.
pub fn status_of(view: &Value) -> Option<PlacementStatus> {
    serde_json::from_value(view["status"].clone()).ok()
}

/// The accepted placements of a history, with their battle sessions.
pub fn accepted(h: &[Entry]) -> BTreeMap<PlacementId, BattleSessionId> {
    h.iter()
        .filter_map(|e| match &e.obs {
            Observation::PlacementAccepted {
                placement,
                battle_session,
            } => Some((placement.clone(), battle_session.clone())),
            _ => None,
        })
        .collect()
}

pub struct Load {
    history: History,
    stop: Arc<AtomicBool>,
    tasks: tokio::task::JoinSet<()>,
}

impl Load {
    pub fn start(region: Region) -> Load {
        let history = History::new();
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for k in 0..PLACERS {
            let (h, stop, region) = (history.clone(), stop.clone(), region.clone());
            tasks.spawn(async move {
                let mut i = k;
                while !stop.load(Ordering::Relaxed) {
                    let b = region.backend(SERVERS[i % SERVERS.len()]);
                    i += 1;
                    place(&b, &h).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
        let (h, stop2) = (history.clone(), stop.clone());
        tasks.spawn(async move {
            let mut i = 0usize;
            while !stop2.load(Ordering::Relaxed) {
                let b = region.backend(SERVERS[i % SERVERS.len()]);
                i += 1;
                watch(&b, &h).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Load {
            history,
            stop,
            tasks,
        }
    }

    /// Stops the load (calls in flight finish) and returns the history.
    pub async fn stop(mut self) -> History {
        self.stop.store(true, Ordering::Relaxed);
        while self.tasks.join_next().await.is_some() {}
        self.history
    }
}

/// One placement: a battle session id, then the placement, recorded as
/// accepted or indeterminate.
async fn place(b: &Backend, h: &History) {
    let Ok(v) = b.ok("/dsm/request_battle_session_id", json!({})).await else {
        return;
    };
    let Some(bs) = v["battle_session_id"].as_str() else {
        return;
    };
    let battle_session = BattleSessionId::new_unchecked(bs);
    let invoked = h.now();
    let res = b
        .ok(
            "/dsm/start_battle_session_placement",
            json!({"fleet_id": "fleet-n", "battle_session_id": bs, "max_players": 4,
                   "players": [{"player_id": "p1"}]}),
        )
        .await;
    match res.ok().and_then(|v| {
        v["placement"]["placement_id"]
            .as_str()
            .map(PlacementId::new_unchecked)
    }) {
        Some(placement) => h.record_since(
            invoked,
            Observation::PlacementAccepted {
                placement,
                battle_session,
            },
        ),
        None => h.record_since(
            invoked,
            Observation::PlacementIndeterminate { battle_session },
        ),
    }
}

/// Describes the newest accepted placements, recording what is seen.
async fn watch(b: &Backend, h: &History) {
    let placed = accepted(&h.snapshot());
    for pl in placed.keys().rev().take(WATCHED) {
        let invoked = h.now();
        if let Some(status) = b
            .describe(pl.as_str())
            .await
            .ok()
            .as_ref()
            .and_then(status_of)
        {
            h.record_since(
                invoked,
                Observation::PlacementStatusSeen {
                    placement: pl.clone(),
                    status,
                },
            );
        }
    }
}
