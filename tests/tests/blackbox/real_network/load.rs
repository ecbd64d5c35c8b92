//! Placement load on the real network: backends placing through every
//! server in turn and following what they placed, all recorded in a
//! [`History`] for the checker.

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
/// How long a backend follows its placement (past the fleet's 20 s
/// placement timeout).
const FOLLOW_FOR: Duration = Duration::from_secs(30);

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
    /// [`PLACERS`] backends, each placing through the servers in turn and
    /// following its placement until it ends before placing the next: a
    /// load the fleet can serve, so that a placement made after a fault
    /// does not queue behind a backlog.
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
                    if let Some(pl) = place(&b, &h).await {
                        follow(&region, &pl, &h, i).await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            });
        }
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
/// accepted or indeterminate; the accepted placement's id.
async fn place(b: &Backend, h: &History) -> Option<PlacementId> {
    let v = b
        .ok("/dsm/request_battle_session_id", json!({}))
        .await
        .ok()?;
    let bs = v["battle_session_id"].as_str()?;
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
        Some(placement) => {
            h.record_since(
                invoked,
                Observation::PlacementAccepted {
                    placement: placement.clone(),
                    battle_session,
                },
            );
            Some(placement)
        }
        None => {
            h.record_since(
                invoked,
                Observation::PlacementIndeterminate { battle_session },
            );
            None
        }
    }
}

/// Describes `pl` (through the servers in turn, from the `k`th) every
/// 200 ms until it has ended or [`FOLLOW_FOR`] has passed, recording each
/// change of status seen.
async fn follow(region: &Region, pl: &PlacementId, h: &History, mut k: usize) {
    let t = tokio::time::Instant::now();
    let mut last = None;
    while t.elapsed() < FOLLOW_FOR {
        let b = region.backend(SERVERS[k % SERVERS.len()]);
        k += 1;
        let invoked = h.now();
        if let Some(status) = b
            .describe(pl.as_str())
            .await
            .ok()
            .as_ref()
            .and_then(status_of)
        {
            if last != Some(status) {
                h.record_since(
                    invoked,
                    Observation::PlacementStatusSeen {
                        placement: pl.clone(),
                        status,
                    },
                );
                last = Some(status);
            }
            if status.is_terminal() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
