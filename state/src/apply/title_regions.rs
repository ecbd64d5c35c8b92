//! Title regions and their keys: `PutTitleRegion` creates or replaces one
//! (its secret key must be long enough to sign tickets with).

use crate::cluster_state::ClusterState;
use crate::command::*;
use respawn_types::*;

impl ClusterState {
    /// `PutTitleRegion`.
    pub(super) fn apply_title_region(
        &mut self,
        _at: UnixMillis,
        cmd: &Command,
        ev: &mut Vec<Event>,
    ) -> Response {
        match cmd {
            Command::PutTitleRegion(tr) => {
                if tr.secret_key.len() < 16 {
                    return Err(Rejection::bad_request(
                        "secret_key must be at least 16 characters",
                    ));
                }
                self.title_regions.insert(tr.id.clone(), tr.clone());
                ev.push(Event::TitleRegionPut {
                    title_region_id: tr.id.clone(),
                });
                Ok(Applied::Done)
            }
            // The dispatch in `apply` sends only this family here.
            _ => Err(Rejection::bad_request("not a title region command")),
        }
    }
}
