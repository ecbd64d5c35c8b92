// Respawn Server SDK for C++ dedicated game servers (C++17).
//
// Speaks the agent's local protocol (docs/sdk-protocol.md) directly: HTTP/1.1
// over a loopback TCP socket to $RESPAWN_SDK_ENDPOINT, authenticated with
// $RESPAWN_PROCESS_TOKEN, and the NDJSON event stream for the callbacks.
// No dependency beyond the C++ standard library and POSIX sockets.
//
// Names follow the PGOS Server SDK: ProcessReady, OnHealthCheck,
// OnStartBattleSession, OnTerminateBattleSession, OnProcessTerminate,
// ActivateBattleSession, Accept/Disconnect/RemovePlayerBattleSession,
// TerminateBattleSession, ProcessEnding, InvokeVirtualServer.
//
// Threads: see "Threads" in sdk/cpp/README.md. In short, every call is
// thread-safe and blocks until the agent answers; callbacks run on threads
// the SDK owns; every call may be made from any callback except
// OnHealthCheck, which must only return its verdict.
//
// Errors are values (Result), never exceptions.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace respawn {

// The outcome of a call. On success `error` is empty and `http_status` is 200.
// On failure `error` is the agent's error code (`bad_request`, `unauthorized`,
// `forbidden`, `not_found`, `conflict`, `invalid_state`, `unavailable`,
// `not_leader`, `internal`, …, passed through unchanged) with its `message`,
// or one of the SDK's own codes, whose `http_status` is 0:
//   `missing_env`         a RESPAWN_* variable is missing or unusable
//   `transport`           the agent could not be reached or the call timed out
//   `unexpected_response` the agent answered something that is not the protocol
//   `already_ready`       ProcessReady was already called on this object
struct Result {
    int http_status = 200;
    std::string error;
    std::string message;

    bool IsSuccess() const { return error.empty(); }
    // "409 invalid_state: <message>", or "ok".
    std::string ToString() const;

    static Result Ok() { return Result{}; }
    static Result Fail(int status, std::string error, std::string message) {
        return Result{status, std::move(error), std::move(message)};
    }
};

// A player reserved in a battle session.
struct Player {
    std::string player_id;
    std::string player_battle_session_id;
    std::string player_data;
    std::string team;  // the player's team ("" when none)
};

// What OnStartBattleSession receives (the `battle_session` of the
// `start_battle_session` event).
struct BattleSession {
    std::string battle_session_id;
    std::string placement_id;
    std::string title_region_id;
    std::string fleet_id;
    uint32_t max_players = 0;
    std::map<std::string, std::string> properties;
    std::vector<Player> players;
    std::string ip;
    uint16_t port = 0;
};

// A virtual server's answer to InvokeVirtualServer: its status, headers and
// body as they are (the agent's own refusals, 404/502/503/504 with a JSON
// body, come back the same way).
struct VirtualServerResponse {
    int status = 0;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
};

class ServerSdk {
  public:
    // Reads RESPAWN_SDK_ENDPOINT, RESPAWN_PROCESS_TOKEN, RESPAWN_PROCESS_ID,
    // RESPAWN_FLEET_ID, RESPAWN_HOST_ID and RESPAWN_LOG_DIR. Check Init()
    // before anything else: `missing_env` when the process was not launched
    // by a Respawn agent.
    ServerSdk();
    // Explicit configuration (tests, tools): endpoint like
    // "http://127.0.0.1:41237".
    ServerSdk(const std::string& endpoint, const std::string& process_id,
              const std::string& token);
    // Stops the callback threads (see Close).
    ~ServerSdk();
    ServerSdk(const ServerSdk&) = delete;
    ServerSdk& operator=(const ServerSdk&) = delete;

    // Whether the configuration is usable.
    Result Init() const;
    const std::string& ProcessId() const;
    const std::string& FleetId() const;
    const std::string& HostId() const;
    // RESPAWN_LOG_DIR, or "" when not set.
    const std::string& LogDir() const;

    // --- Callbacks: set them before ProcessReady. -------------------------
    // OnHealthCheck (optional, default: healthy). Runs on the event thread:
    // return the verdict at once, do not call the SDK from it.
    void OnHealthCheck(std::function<bool()> cb);
    // OnStartBattleSession (required): prepare, then ActivateBattleSession.
    void OnStartBattleSession(std::function<void(const BattleSession&)> cb);
    // OnTerminateBattleSession (optional): the platform ended this session.
    void OnTerminateBattleSession(std::function<void(const std::string& battle_session_id)> cb);
    // OnProcessTerminate (required): exit promptly, without ProcessEnding.
    void OnProcessTerminate(std::function<void(const std::string& reason)> cb);
    // OnBattleSessionUpdated (optional): players were added; the session as it is now.
    void OnBattleSessionUpdated(std::function<void(const BattleSession& session)> cb);
    // OnPlayerBattleSessionsTerminated (optional): the backend ended these reservations.
    void OnPlayerBattleSessionsTerminated(
        std::function<void(const std::string& battle_session_id,
                           const std::vector<std::string>& player_battle_session_ids)>
            cb);
    // OnBattlePlayerOffline (optional): a player's game client went offline.
    void OnBattlePlayerOffline(std::function<void(const std::string& battle_session_id,
                                                  const std::string& player_id,
                                                  const std::string& player_battle_session_id)>
                                   cb);
    // OnBattlePlayerBanned (optional): a player was banned.
    void OnBattlePlayerBanned(std::function<void(const std::string& battle_session_id,
                                                 const std::string& player_id,
                                                 const std::string& player_battle_session_id,
                                                 const std::string& reason)>
                                  cb);
    // Where the SDK writes its own diagnostics (default: stderr).
    void SetLogger(std::function<void(const std::string&)> log);

    // --- Calls (blocking, thread-safe). --------------------------------
    // ProcessReady: game clients connect to `port`; `log_paths` are kept as
    // the process's logs. On success the SDK starts its threads and opens
    // the event stream.
    Result ProcessReady(uint16_t port, const std::vector<std::string>& log_paths);
    Result ActivateBattleSession(const std::string& battle_session_id);
    Result AcceptPlayerBattleSession(const std::string& battle_session_id,
                                     const std::string& player_battle_session_id);
    Result DisconnectPlayerBattleSession(const std::string& battle_session_id,
                                         const std::string& player_battle_session_id);
    Result RemovePlayerBattleSession(const std::string& battle_session_id,
                                     const std::string& player_battle_session_id);
    // Parallel mode only; in simple mode call ProcessEnding.
    Result TerminateBattleSession(const std::string& battle_session_id);
    // The process is about to exit; exit (status 0) soon after.
    Result ProcessEnding();
    // InvokeVirtualServer: `method` ("GET", "POST", …) on `path` (with its
    // query string) of virtual server `vs`. The Result fails only when the
    // agent cannot be reached; any HTTP answer lands in `out`. Up to 25 s;
    // do not call it from OnHealthCheck.
    Result InvokeVirtualServer(const std::string& vs, const std::string& method,
                               const std::string& path,
                               const std::vector<std::pair<std::string, std::string>>& headers,
                               const std::string& body, VirtualServerResponse& out);

    // Stops the event stream and the callback threads; no callback starts
    // after it returns. Safe to call twice, and from a callback (then it
    // does not wait for that callback's own thread).
    void Close();

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace respawn
