//! Tests of `apply` as a whole.

use crate::test_fixture::*;
use crate::*;
use respawn_types::*;

#[test]
fn apply_is_deterministic() {
    let run = || {
        let mut h = H::new(ServerMode::Simple);
        h.ready_process(1);
        h.ready_process(2);
        h.active_session(1, 1);
        h.start(2, vec![]);
        h.ok(Command::AssignPlacement {
            placement_id: pl(2),
            process_id: pid(2),
        });
        h.s
    };
    assert_eq!(run(), run());
}
