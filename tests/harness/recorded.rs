//! Placements and Describes through a backend, each recorded in the
//! history with its outcome, whatever it is.

use crate::backend::Backend;
use crate::cluster::FLEET;
use crate::history::{History, Observation};
use crate::support::wait_for;
use respawn_types::*;
use std::time::Duration;

/// What one placement attempt came to (each is also recorded in the history).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlaceOutcome {
    /// Answered 200: the placement id.
    Accepted(String),
    /// The cluster could not say (502/503/504, or no answer): the placement
    /// may or may not exist.
    Unavailable(String),
    /// Refused (4xx, or a 500): with the status and body.
    Refused(u16, String),
}

impl PlaceOutcome {
    pub fn accepted(self) -> Option<String> {
        match self {
            PlaceOutcome::Accepted(pl) => Some(pl),
            _ => None,
        }
    }
}

/// "The cluster cannot answer now" rather than "no": 502/503/504.
fn unavailable(status: u16) -> bool {
    matches!(status, 502..=504)
}

/// Places a battle session through `backend` and records the outcome in
/// `history`, whatever it is: accepted, indeterminate (may or may not be
/// placed), not started (no battle session id) or refused (which the
/// checker reports as a violation).
pub async fn place_recorded(backend: &Backend, history: &History) -> PlaceOutcome {
    let v = match backend
        .post("/dsm/request_battle_session_id", serde_json::json!({}))
        .await
    {
        Ok((200, v)) => v,
        Ok((status, v)) if !unavailable(status) => {
            history.record(Observation::PlacementRefused {
                battle_session: None,
                status,
                error: v.to_string(),
            });
            return PlaceOutcome::Refused(status, v.to_string());
        }
        other => {
            let error = match other {
                Ok((status, v)) => format!("{status} {v}"),
                Err(e) => e.to_string(),
            };
            history.record(Observation::PlacementNotStarted {
                error: error.clone(),
            });
            return PlaceOutcome::Unavailable(error);
        }
    };
    let Some(bs) = v["battle_session_id"].as_str().map(str::to_string) else {
        let error = format!("no battle_session_id in {v}");
        history.record(Observation::PlacementRefused {
            battle_session: None,
            status: 200,
            error: error.clone(),
        });
        return PlaceOutcome::Refused(200, error);
    };
    let battle_session = BattleSessionId::new_unchecked(bs.clone());
    let body = serde_json::json!({"fleet_id": FLEET, "battle_session_id": bs, "max_players": 2});
    match backend
        .post("/dsm/start_battle_session_placement", body)
        .await
    {
        Ok((200, v)) => match v["placement"]["placement_id"].as_str() {
            Some(pl) => {
                history.record(Observation::PlacementAccepted {
                    placement: PlacementId::new_unchecked(pl),
                    battle_session,
                });
                PlaceOutcome::Accepted(pl.to_string())
            }
            None => {
                let error = format!("no placement id in {v}");
                history.record(Observation::PlacementRefused {
                    battle_session: Some(battle_session),
                    status: 200,
                    error: error.clone(),
                });
                PlaceOutcome::Refused(200, error)
            }
        },
        Ok((status, v)) if !unavailable(status) => {
            history.record(Observation::PlacementRefused {
                battle_session: Some(battle_session),
                status,
                error: v.to_string(),
            });
            PlaceOutcome::Refused(status, v.to_string())
        }
        other => {
            history.record(Observation::PlacementIndeterminate { battle_session });
            PlaceOutcome::Unavailable(match other {
                Ok((status, v)) => format!("{status} {v}"),
                Err(e) => e.to_string(),
            })
        }
    }
}

/// Describes `placement` through `backend` and records the status seen
/// (with the time the read started, see [`History::record_since`]);
/// `None` if the read failed (nothing is recorded then).
pub async fn describe_recorded(
    backend: &Backend,
    history: &History,
    placement: &str,
) -> Option<PlacementStatus> {
    let invoked = history.now();
    let v = backend.describe(placement).await.ok()?;
    let status: PlacementStatus = serde_json::from_value(v["status"].clone()).ok()?;
    history.record_since(
        invoked,
        Observation::PlacementStatusSeen {
            placement: PlacementId::new_unchecked(placement),
            status,
        },
    );
    Some(status)
}

/// Waits until a Describe through `backend` answers `status` for
/// `placement`, recording every read; fails if it reaches another terminal
/// status first.
pub async fn wait_status_recorded(
    backend: &Backend,
    history: &History,
    placement: &str,
    status: PlacementStatus,
    deadline: Duration,
) -> anyhow::Result<()> {
    let seen = wait_for(
        &format!("placement {placement} {status:?}"),
        deadline,
        || async {
            let s = describe_recorded(backend, history, placement).await?;
            (s == status || s.is_terminal()).then_some(s)
        },
    )
    .await?;
    anyhow::ensure!(
        seen == status,
        "placement {placement} ended {seen:?}, not {status:?}"
    );
    Ok(())
}
