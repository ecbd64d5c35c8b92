//! [`Callbacks`]: what the platform invokes on a DS.

use crate::{BattleSessionId, BattleSessionSpec, PlayerBattleSessionId, PlayerId};
use std::future::Future;

/// The callbacks the platform invokes on a DS. Implement the required ones;
/// the others have sensible defaults.
///
/// Methods may be written as `async fn` in the `impl`. Health checks run
/// concurrently with everything else (a slow `on_start_battle_session`
/// does not make the process look unhealthy); the other callbacks run one
/// at a time, in the order the agent sent them.
pub trait Callbacks: Send + Sync + 'static {
    /// OnHealthCheck: is this process healthy? Called every
    /// `health_check_interval`; three consecutive `false` answers (or no
    /// answer within the interval) make the agent terminate the process.
    fn on_health_check(&self) -> impl Future<Output = bool> + Send {
        async { true }
    }

    /// OnStartBattleSession: prepare the battle session, then call
    /// [`ServerSdk::activate_battle_session`].
    fn on_start_battle_session(
        &self,
        session: BattleSessionSpec,
    ) -> impl Future<Output = ()> + Send;

    /// OnTerminateBattleSession: the platform ended this battle session.
    fn on_terminate_battle_session(
        &self,
        battle_session_id: BattleSessionId,
    ) -> impl Future<Output = ()> + Send {
        let _ = battle_session_id;
        async {}
    }

    /// OnProcessTerminate: shut down now. The agent kills the process if it
    /// is still alive a few seconds later.
    fn on_process_terminate(&self, reason: String) -> impl Future<Output = ()> + Send;

    /// OnBattleSessionUpdated: the game backend added players to a battle
    /// session this process holds; `session` is the session as it is now
    /// (its `players` include the new ones).
    fn on_battle_session_updated(
        &self,
        session: BattleSessionSpec,
    ) -> impl Future<Output = ()> + Send {
        let _ = session;
        async {}
    }

    /// OnPlayerBattleSessionsTerminated: the game backend ended these
    /// players' reservations; they will not be accepted again (disconnect
    /// them if they are connected).
    fn on_player_battle_sessions_terminated(
        &self,
        battle_session_id: BattleSessionId,
        player_battle_session_ids: Vec<PlayerBattleSessionId>,
    ) -> impl Future<Output = ()> + Send {
        let _ = (battle_session_id, player_battle_session_ids);
        async {}
    }

    /// OnBattlePlayerOffline: a player's game client went offline.
    fn on_battle_player_offline(
        &self,
        battle_session_id: BattleSessionId,
        player_id: PlayerId,
        player_battle_session_id: PlayerBattleSessionId,
    ) -> impl Future<Output = ()> + Send {
        let _ = (battle_session_id, player_id, player_battle_session_id);
        async {}
    }

    /// OnBattlePlayerBanned: a player was banned; `reason` says why.
    fn on_battle_player_banned(
        &self,
        battle_session_id: BattleSessionId,
        player_id: PlayerId,
        player_battle_session_id: PlayerBattleSessionId,
        reason: String,
    ) -> impl Future<Output = ()> + Send {
        let _ = (
            battle_session_id,
            player_id,
            player_battle_session_id,
            reason,
        );
        async {}
    }
}
