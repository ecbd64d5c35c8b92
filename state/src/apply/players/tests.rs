//! Transition tests of player battle sessions.

use crate::test_fixture::*;
use crate::*;
use respawn_types::*;

#[test]
fn add_players_and_capacity() {
    let mut h = H::new(ServerMode::Simple);
    h.ready_process(1);
    h.active_session(1, 1);
    let add = |players| Command::AddPlayers {
        title_region_id: tr(),
        battle_session_id: bs(1),
        players,
    };
    let ev = h.ok(add(vec![(pbs(1), player(1)), (pbs(2), player(2))]));
    assert!(ev.contains(&Event::PlayersAdded {
        battle_session_id: bs(1)
    }));
    assert_eq!(h.placement(1).player_battle_sessions.len(), 3);
    assert!(
        matches!(
            h.refused(add(vec![(pbs(3), player(1))])),
            Rejection::Conflict(_)
        ),
        "duplicate player"
    );
    assert!(
        matches!(
            h.refused(add(vec![(pbs(1), player(5))])),
            Rejection::Conflict(_)
        ),
        "duplicate pbs id"
    );
    assert!(
        matches!(
            h.refused(add(vec![(pbs(4), player(4)), (pbs(5), player(5))])),
            Rejection::Conflict(_)
        ),
        "max_players 4"
    );
    assert!(matches!(h.refused(add(vec![])), Rejection::BadRequest(_)));
    // Backend terminates one; its slot frees, and the DS is to be told once.
    let terminate = Command::TerminatePlayerBattleSession {
        title_region_id: tr(),
        battle_session_id: bs(1),
        player_battle_session_id: pbs(1),
    };
    let ev = h.ok(terminate.clone());
    assert!(ev.contains(&Event::PlayersTerminated {
        battle_session_id: bs(1),
        player_battle_session_ids: vec![pbs(1)],
    }));
    let (again, ev) = h.run(terminate);
    assert_eq!(again, Ok(Applied::Unchanged));
    assert!(ev.is_empty(), "{ev:?}");
    assert_eq!(h.player_status(1), PlayerBattleSessionStatus::Completed);
    h.ok(add(vec![(pbs(4), player(4)), (pbs(5), player(5))]));
    // Foreign region cannot add.
    assert!(matches!(
        h.refused(Command::AddPlayers {
            title_region_id: TitleRegionId::new_unchecked("tr-x"),
            battle_session_id: bs(1),
            players: vec![(pbs(9), player(9))]
        }),
        Rejection::NotFound { .. }
    ));
}

#[test]
fn player_updates_need_the_hosting_process_and_an_active_session() {
    let mut h = H::new(ServerMode::Simple);
    h.ready_process(1);
    h.ready_process(2);
    h.start(1, vec![(pbs(1), player(1))]);
    h.ok(Command::AssignPlacement {
        placement_id: pl(1),
        process_id: pid(1),
    });
    let upd = |p, a| Command::PlayerUpdate {
        process_id: pid(p),
        battle_session_id: bs(1),
        player_battle_session_id: pbs(1),
        action: a,
    };
    assert!(
        matches!(
            h.refused(upd(1, PlayerAction::Accept)),
            Rejection::InvalidState(_)
        ),
        "not active yet"
    );
    h.ok(Command::ActivateBattleSession {
        process_id: pid(1),
        battle_session_id: bs(1),
    });
    assert!(
        matches!(
            h.refused(upd(2, PlayerAction::Accept)),
            Rejection::Forbidden(_)
        ),
        "foreign process: forbidden (docs/sdk-protocol.md §4)"
    );
    assert!(
        matches!(
            h.refused(upd(1, PlayerAction::Disconnect)),
            Rejection::InvalidState(_)
        ),
        "reserved → disconnected"
    );
    assert!(matches!(
        h.refused(Command::PlayerUpdate {
            process_id: pid(1),
            battle_session_id: bs(1),
            player_battle_session_id: pbs(99),
            action: PlayerAction::Accept
        }),
        Rejection::NotFound { .. }
    ));
    h.ok(upd(1, PlayerAction::Remove));
    assert_eq!(h.player_status(1), PlayerBattleSessionStatus::Completed);
}
