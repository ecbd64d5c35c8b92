//! The retention records the state keeps: issued battle session ids with
//! the time they were issued, and the watermarks of what retention removed
//! (how an expired id is told from an unknown one; see [`crate::retention`]).

use respawn_types::*;
use serde::{Deserialize, Serialize};

/// An issued battle session id: whose it is and when it was issued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "IssuedRepr")]
pub struct IssuedId {
    pub title_region_id: TitleRegionId,
    pub issued_at: UnixMillis,
}

/// What a snapshot may hold: the record, or (written before retention
/// existed) only the title region, read as issued at time 0.
#[derive(Deserialize)]
#[serde(untagged)]
enum IssuedRepr {
    Record {
        title_region_id: TitleRegionId,
        issued_at: UnixMillis,
    },
    Region(TitleRegionId),
}

impl From<IssuedRepr> for IssuedId {
    fn from(r: IssuedRepr) -> Self {
        match r {
            IssuedRepr::Record {
                title_region_id,
                issued_at,
            } => IssuedId {
                title_region_id,
                issued_at,
            },
            IssuedRepr::Region(title_region_id) => IssuedId {
                title_region_id,
                issued_at: 0,
            },
        }
    }
}

/// Per kind, the newest creation time (unix ms, from the id) among the
/// records retention removed; 0 while none was.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunedWatermarks {
    pub placement: UnixMillis,
    pub battle_session: UnixMillis,
    pub player_battle_session: UnixMillis,
    pub process: UnixMillis,
    pub issued_id: UnixMillis,
}

fn covers(mark: UnixMillis, created: Option<u64>) -> bool {
    matches!(created, Some(t) if t <= mark)
}

fn raise(mark: &mut UnixMillis, created: Option<u64>) {
    if let Some(t) = created {
        *mark = (*mark).max(t);
    }
}

impl PrunedWatermarks {
    /// Was a placement with this (missing) id removed by retention?
    pub fn placement(&self, id: &PlacementId) -> bool {
        covers(self.placement, id.generated_at())
    }
    /// Was a battle session with this (missing) id removed by retention?
    pub fn session(&self, id: &BattleSessionId) -> bool {
        covers(self.battle_session, id.generated_at())
    }
    pub fn player_battle_session(&self, id: &PlayerBattleSessionId) -> bool {
        covers(self.player_battle_session, id.generated_at())
    }
    pub fn process(&self, id: &ProcessId) -> bool {
        covers(self.process, id.generated_at())
    }
    /// Was this battle session id issued and then expired unused (or used
    /// by a session that was removed since)?
    pub fn issued_id(&self, id: &BattleSessionId) -> bool {
        covers(self.issued_id, id.generated_at()) || self.session(id)
    }

    pub(crate) fn note_placement(&mut self, id: &PlacementId) {
        raise(&mut self.placement, id.generated_at());
    }
    pub(crate) fn note_session(&mut self, id: &BattleSessionId) {
        raise(&mut self.battle_session, id.generated_at());
    }
    pub(crate) fn note_player_battle_session(&mut self, id: &PlayerBattleSessionId) {
        raise(&mut self.player_battle_session, id.generated_at());
    }
    pub(crate) fn note_process(&mut self, id: &ProcessId) {
        raise(&mut self.process, id.generated_at());
    }
    pub(crate) fn note_issued_id(&mut self, id: &BattleSessionId) {
        raise(&mut self.issued_id, id.generated_at());
    }
}
