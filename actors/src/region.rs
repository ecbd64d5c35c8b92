//! One actor per title region: the supervisor of its fleets' actors.

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use respawn_types::TitleRegionId;

pub struct RegionActor;

#[derive(Debug)]
pub enum RegionMsg {}

pub struct RegionState {
    id: TitleRegionId,
}

impl Actor for RegionActor {
    type Msg = RegionMsg;
    type State = RegionState;
    type Arguments = TitleRegionId;

    async fn pre_start(
        &self,
        _myself: ActorRef<RegionMsg>,
        id: TitleRegionId,
    ) -> Result<RegionState, ActorProcessingErr> {
        Ok(RegionState { id })
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<RegionMsg>,
        evt: SupervisionEvent,
        st: &mut RegionState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(who, err) = evt {
            tracing::error!(title_region = %st.id, actor = ?who.get_id(), %err, "fleet actor failed");
        }
        Ok(())
    }
}
