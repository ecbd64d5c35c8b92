// ServerSdk: the calls of the local protocol (POSTs to the agent) and the
// two SDK-owned threads, one reading the event stream (and answering health
// checks), one running the other callbacks in order.
#include "respawn/server_sdk.h"

#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <iostream>
#include <mutex>
#include <thread>

#include "http.h"
#include "json.h"

namespace respawn {

namespace {

// Time limit of one call (the agent forwards some calls to the cluster,
// which answers within 30 s).
const int kCallTimeoutSecs = 60;
// InvokeVirtualServer: up to 10 s for an instance plus 10 s for its answer.
const int kVsCallTimeoutSecs = 25;
// Longest event line accepted from the agent.
const size_t kMaxEventLine = 1024 * 1024;
// Reconnection backoff of the event stream.
const std::chrono::milliseconds kFirstBackoff(50);
const std::chrono::milliseconds kMaxBackoff(2000);

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v == nullptr ? std::string() : std::string(v);
}

std::string clip(const std::string& s) { return s.size() <= 300 ? s : s.substr(0, 300) + "…"; }

bool parse_battle_session(const json::Value& v, BattleSession& bs) {
    if (!v.is_object() || v["battle_session_id"].str().empty()) return false;
    bs.battle_session_id = v["battle_session_id"].str();
    bs.placement_id = v["placement_id"].str();
    bs.title_region_id = v["title_region_id"].str();
    bs.fleet_id = v["fleet_id"].str();
    bs.max_players = static_cast<uint32_t>(v["max_players"].num());
    for (const auto& kv : v["properties"].members()) bs.properties[kv.first] = kv.second.str();
    for (const auto& p : v["players"].items()) {
        bs.players.push_back(Player{p["player_id"].str(), p["player_battle_session_id"].str(),
                                    p["player_data"].str(), p["team"].str()});
    }
    bs.ip = v["ip"].str();
    bs.port = static_cast<uint16_t>(v["port"].num());
    return true;
}

}  // namespace

std::string Result::ToString() const {
    if (IsSuccess()) return "ok";
    return (http_status != 0 ? std::to_string(http_status) + " " : std::string()) + error + ": " +
           message;
}

struct ServerSdk::Impl {
    std::string process_id, token, fleet_id, host_id, log_dir;
    std::string config_error;  // why the configuration is unusable, or ""
    http::Endpoint endpoint;

    std::mutex mu;  // guards everything below
    std::condition_variable cv;
    std::function<bool()> on_health = [] { return true; };
    std::function<void(const BattleSession&)> on_start;
    std::function<void(const std::string&)> on_terminate_session;
    std::function<void(const std::string&)> on_process_terminate;
    std::function<void(const BattleSession&)> on_updated;
    std::function<void(const std::string&, const std::vector<std::string>&)> on_players_terminated;
    std::function<void(const std::string&, const std::string&, const std::string&)> on_player_offline;
    std::function<void(const std::string&, const std::string&, const std::string&, const std::string&)>
        on_player_banned;
    std::function<void(const std::string&)> logger = [](const std::string& line) {
        std::cerr << "[respawn-sdk] " << line << std::endl;
    };
    bool ready = false;
    bool stopping = false;
    int events_fd = -1;  // the event stream's socket while it is open
    std::deque<std::function<void()>> queue;  // callbacks for the dispatcher
    std::thread reader, dispatcher;

    std::mutex close_mu;  // one Close() joins the threads at a time

    void configure(const std::string& url, std::string pid, std::string tok) {
        process_id = std::move(pid);
        token = std::move(tok);
        if (url.empty()) {
            config_error = "RESPAWN_SDK_ENDPOINT is not set (was this process launched by a Respawn agent?)";
        } else if (token.empty()) {
            config_error = "RESPAWN_PROCESS_TOKEN is not set (was this process launched by a Respawn agent?)";
        } else if (!http::parse_endpoint(url, endpoint, config_error)) {
            config_error = "RESPAWN_SDK_ENDPOINT is invalid: " + config_error;
        }
    }

    void log(const std::string& line) {
        std::function<void(const std::string&)> l;
        {
            std::lock_guard<std::mutex> g(mu);
            l = logger;
        }
        if (l) l(line);
    }

    http::Headers auth() const { return {{"Authorization", "Bearer " + token}}; }

    // POSTs a JSON body; maps the answer to a Result.
    Result call(const std::string& path, const std::string& body) {
        if (!config_error.empty()) return Result::Fail(0, "missing_env", config_error);
        http::Headers headers = auth();
        headers.emplace_back("Content-Type", "application/json");
        http::Response r;
        std::string err;
        if (!http::request(endpoint, "POST", path, headers, body, kCallTimeoutSecs, r, err)) {
            return Result::Fail(0, "transport", "could not reach the agent: " + err);
        }
        if (r.status == 200) return Result::Ok();
        json::Value v;
        std::string perr;
        if (json::parse(r.body, v, perr) && !v["error"].str().empty()) {
            return Result::Fail(r.status, v["error"].str(), v["message"].str());
        }
        return Result::Fail(r.status, "unexpected_response",
                            "agent answered " + std::to_string(r.status) + ": " + clip(r.body));
    }

    void enqueue(std::function<void()> task) {
        {
            std::lock_guard<std::mutex> g(mu);
            if (stopping) return;
            queue.push_back(std::move(task));
        }
        cv.notify_all();
    }

    void handle_event(const std::string& line) {
        json::Value ev;
        std::string err;
        if (!json::parse(line, ev, err) || !ev.is_object()) {
            log("ignoring an event that is not a JSON object: " + err);
            return;
        }
        const std::string type = ev["type"].str();
        if (type == "health_check") {
            std::function<bool()> cb;
            {
                std::lock_guard<std::mutex> g(mu);
                cb = on_health;
            }
            bool healthy = false;
            try {
                healthy = cb ? cb() : true;
            } catch (const std::exception& e) {
                log(std::string("OnHealthCheck threw: ") + e.what());
            } catch (...) {
                log("OnHealthCheck threw");
            }
            long long seq = static_cast<long long>(ev["seq"].num());
            Result r = call("/v1/health", "{\"seq\":" + std::to_string(seq) +
                                              ",\"healthy\":" + (healthy ? "true" : "false") + "}");
            // A late answer (conflict) is harmless.
            if (!r.IsSuccess() && r.error != "conflict") log("health answer failed: " + r.ToString());
        } else if (type == "start_battle_session") {
            BattleSession bs;
            if (!parse_battle_session(ev["battle_session"], bs)) {
                log("ignoring a start_battle_session without a battle session");
                return;
            }
            enqueue([this, bs] {
                std::function<void(const BattleSession&)> cb;
                {
                    std::lock_guard<std::mutex> g(mu);
                    cb = on_start;
                }
                if (cb) cb(bs);
                else log("no OnStartBattleSession callback: battle session " + bs.battle_session_id + " ignored");
            });
        } else if (type == "terminate_battle_session") {
            std::string id = ev["battle_session_id"].str();
            enqueue([this, id] {
                std::function<void(const std::string&)> cb;
                {
                    std::lock_guard<std::mutex> g(mu);
                    cb = on_terminate_session;
                }
                if (cb) cb(id);
            });
        } else if (type == "process_terminate") {
            std::string reason = ev["reason"].str();
            enqueue([this, reason] {
                std::function<void(const std::string&)> cb;
                {
                    std::lock_guard<std::mutex> g(mu);
                    cb = on_process_terminate;
                }
                if (cb) cb(reason);
            });
        } else if (type == "battle_session_updated") {
            BattleSession bs;
            if (!parse_battle_session(ev["battle_session"], bs)) return;
            enqueue([this, bs] {
                std::function<void(const BattleSession&)> cb;
                {
                    std::lock_guard<std::mutex> g(mu);
                    cb = on_updated;
                }
                if (cb) cb(bs);
            });
        } else if (type == "player_battle_sessions_terminated") {
            std::string id = ev["battle_session_id"].str();
            std::vector<std::string> ids;
            for (const auto& v : ev["player_battle_session_ids"].items()) ids.push_back(v.str());
            enqueue([this, id, ids] {
                std::function<void(const std::string&, const std::vector<std::string>&)> cb;
                {
                    std::lock_guard<std::mutex> g(mu);
                    cb = on_players_terminated;
                }
                if (cb) cb(id, ids);
            });
        } else if (type == "battle_player_offline" || type == "battle_player_banned") {
            std::string id = ev["battle_session_id"].str();
            std::string player = ev["player_id"].str();
            std::string pbs = ev["player_battle_session_id"].str();
            std::string reason = ev["reason"].str();
            bool banned = type == "battle_player_banned";
            enqueue([this, id, player, pbs, reason, banned] {
                std::function<void(const std::string&, const std::string&, const std::string&)> off;
                std::function<void(const std::string&, const std::string&, const std::string&,
                                   const std::string&)>
                    ban;
                {
                    std::lock_guard<std::mutex> g(mu);
                    off = on_player_offline;
                    ban = on_player_banned;
                }
                if (banned && ban) ban(id, player, pbs, reason);
                if (!banned && off) off(id, player, pbs);
            });
        }
        // Unknown event types are ignored: newer agents may send more.
    }

    // One GET /v1/events until it ends; true if the agent answered 200.
    bool read_stream() {
        http::Connection conn;
        std::string err;
        http::Response head;
        if (!conn.open(endpoint, 0, err) || !conn.send_request("GET", "/v1/events", auth(), "", err) ||
            !conn.read_head(head, err)) {
            log("event stream: " + err);
            return false;
        }
        if (head.status != 200) {
            log("event stream refused with status " + std::to_string(head.status));
            return false;
        }
        {
            std::lock_guard<std::mutex> g(mu);
            if (stopping) return true;
            events_fd = conn.fd();
        }
        std::string line;
        bool ok = conn.stream_body(
            [this, &line](const char* data, size_t n) {
                for (size_t i = 0; i < n; ++i) {
                    if (data[i] != '\n') {
                        line += data[i];
                        continue;
                    }
                    if (line.find_first_not_of(" \t\r") != std::string::npos) handle_event(line);
                    line.clear();
                }
                if (line.size() > kMaxEventLine) {
                    log("event line too long; reconnecting");
                    return false;
                }
                std::lock_guard<std::mutex> g(mu);
                return !stopping;
            },
            err);
        {
            std::lock_guard<std::mutex> g(mu);
            events_fd = -1;
            if (!ok && !stopping) log("event stream: " + err);
        }
        return true;
    }

    void reader_loop() {
        auto backoff = kFirstBackoff;
        while (true) {
            if (read_stream()) backoff = kFirstBackoff;
            std::unique_lock<std::mutex> g(mu);
            if (cv.wait_for(g, backoff, [this] { return stopping; })) return;
            backoff = std::min(backoff * 2, kMaxBackoff);
        }
    }

    void dispatcher_loop() {
        while (true) {
            std::function<void()> task;
            {
                std::unique_lock<std::mutex> g(mu);
                cv.wait(g, [this] { return stopping || !queue.empty(); });
                if (stopping) return;
                task = std::move(queue.front());
                queue.pop_front();
            }
            try {
                task();
            } catch (const std::exception& e) {
                log(std::string("a callback threw: ") + e.what());
            } catch (...) {
                log("a callback threw");
            }
        }
    }
};

ServerSdk::ServerSdk() : impl_(new Impl) {
    impl_->configure(env("RESPAWN_SDK_ENDPOINT"), env("RESPAWN_PROCESS_ID"), env("RESPAWN_PROCESS_TOKEN"));
    impl_->fleet_id = env("RESPAWN_FLEET_ID");
    impl_->host_id = env("RESPAWN_HOST_ID");
    impl_->log_dir = env("RESPAWN_LOG_DIR");
}

ServerSdk::ServerSdk(const std::string& endpoint, const std::string& process_id,
                     const std::string& token)
    : impl_(new Impl) {
    impl_->configure(endpoint, process_id, token);
}

ServerSdk::~ServerSdk() { Close(); }

Result ServerSdk::Init() const {
    if (!impl_->config_error.empty()) return Result::Fail(0, "missing_env", impl_->config_error);
    return Result::Ok();
}

const std::string& ServerSdk::ProcessId() const { return impl_->process_id; }
const std::string& ServerSdk::FleetId() const { return impl_->fleet_id; }
const std::string& ServerSdk::HostId() const { return impl_->host_id; }
const std::string& ServerSdk::LogDir() const { return impl_->log_dir; }

void ServerSdk::OnHealthCheck(std::function<bool()> cb) {
    std::lock_guard<std::mutex> g(impl_->mu);
    impl_->on_health = std::move(cb);
}

void ServerSdk::OnStartBattleSession(std::function<void(const BattleSession&)> cb) {
    std::lock_guard<std::mutex> g(impl_->mu);
    impl_->on_start = std::move(cb);
}

void ServerSdk::OnTerminateBattleSession(std::function<void(const std::string&)> cb) {
    std::lock_guard<std::mutex> g(impl_->mu);
    impl_->on_terminate_session = std::move(cb);
}

void ServerSdk::OnProcessTerminate(std::function<void(const std::string&)> cb) {
    std::lock_guard<std::mutex> g(impl_->mu);
    impl_->on_process_terminate = std::move(cb);
}

void ServerSdk::OnBattleSessionUpdated(std::function<void(const BattleSession&)> cb) {
    std::lock_guard<std::mutex> g(impl_->mu);
    impl_->on_updated = std::move(cb);
}

void ServerSdk::OnPlayerBattleSessionsTerminated(
    std::function<void(const std::string&, const std::vector<std::string>&)> cb) {
    std::lock_guard<std::mutex> g(impl_->mu);
    impl_->on_players_terminated = std::move(cb);
}

void ServerSdk::OnBattlePlayerOffline(
    std::function<void(const std::string&, const std::string&, const std::string&)> cb) {
    std::lock_guard<std::mutex> g(impl_->mu);
    impl_->on_player_offline = std::move(cb);
}

void ServerSdk::OnBattlePlayerBanned(
    std::function<void(const std::string&, const std::string&, const std::string&, const std::string&)>
        cb) {
    std::lock_guard<std::mutex> g(impl_->mu);
    impl_->on_player_banned = std::move(cb);
}

void ServerSdk::SetLogger(std::function<void(const std::string&)> log) {
    std::lock_guard<std::mutex> g(impl_->mu);
    impl_->logger = std::move(log);
}

Result ServerSdk::ProcessReady(uint16_t port, const std::vector<std::string>& log_paths) {
    {
        std::lock_guard<std::mutex> g(impl_->mu);
        if (impl_->ready) return Result::Fail(0, "already_ready", "ProcessReady was already called");
        if (impl_->stopping) return Result::Fail(0, "invalid_state", "the SDK was closed");
        impl_->ready = true;
    }
    std::string body = "{\"port\":" + std::to_string(port) + ",\"log_paths\":[";
    for (size_t i = 0; i < log_paths.size(); ++i) {
        if (i > 0) body += ',';
        body += json::quote(log_paths[i]);
    }
    body += "]}";
    Result r = impl_->call("/v1/process_ready", body);
    std::lock_guard<std::mutex> g(impl_->mu);
    if (!r.IsSuccess() || impl_->stopping) {
        impl_->ready = false;  // may be retried (e.g. after `unavailable`)
        return r;
    }
    Impl* impl = impl_.get();
    impl_->reader = std::thread([impl] { impl->reader_loop(); });
    impl_->dispatcher = std::thread([impl] { impl->dispatcher_loop(); });
    return r;
}

static std::string session_body(const std::string& battle_session_id) {
    return "{\"battle_session_id\":" + json::quote(battle_session_id) + "}";
}

static std::string player_body(const std::string& battle_session_id,
                               const std::string& player_battle_session_id) {
    return "{\"battle_session_id\":" + json::quote(battle_session_id) +
           ",\"player_battle_session_id\":" + json::quote(player_battle_session_id) + "}";
}

Result ServerSdk::ActivateBattleSession(const std::string& battle_session_id) {
    return impl_->call("/v1/activate_battle_session", session_body(battle_session_id));
}

Result ServerSdk::AcceptPlayerBattleSession(const std::string& battle_session_id,
                                            const std::string& player_battle_session_id) {
    return impl_->call("/v1/accept_player_battle_session",
                       player_body(battle_session_id, player_battle_session_id));
}

Result ServerSdk::DisconnectPlayerBattleSession(const std::string& battle_session_id,
                                                const std::string& player_battle_session_id) {
    return impl_->call("/v1/disconnect_player_battle_session",
                       player_body(battle_session_id, player_battle_session_id));
}

Result ServerSdk::RemovePlayerBattleSession(const std::string& battle_session_id,
                                            const std::string& player_battle_session_id) {
    return impl_->call("/v1/remove_player_battle_session",
                       player_body(battle_session_id, player_battle_session_id));
}

Result ServerSdk::TerminateBattleSession(const std::string& battle_session_id) {
    return impl_->call("/v1/terminate_battle_session", session_body(battle_session_id));
}

Result ServerSdk::ProcessEnding() { return impl_->call("/v1/process_ending", "{}"); }

Result ServerSdk::InvokeVirtualServer(
    const std::string& vs, const std::string& method, const std::string& path,
    const std::vector<std::pair<std::string, std::string>>& headers, const std::string& body,
    VirtualServerResponse& out) {
    if (!impl_->config_error.empty()) return Result::Fail(0, "missing_env", impl_->config_error);
    http::Headers all = impl_->auth();
    for (const auto& h : headers) {
        std::string n = h.first;
        std::transform(n.begin(), n.end(), n.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        // The SDK writes these itself.
        if (n == "authorization" || n == "content-length" || n == "host" || n == "connection" ||
            n == "transfer-encoding") {
            continue;
        }
        all.push_back(h);
    }
    std::string target = "/v1/vs/invoke/" + vs + (path.empty() || path[0] != '/' ? "/" : "") + path;
    http::Response r;
    std::string err;
    if (!http::request(impl_->endpoint, method, target, all, body, kVsCallTimeoutSecs, r, err)) {
        return Result::Fail(0, "transport", "could not reach the agent: " + err);
    }
    out.status = r.status;
    out.headers = std::move(r.headers);
    out.body = std::move(r.body);
    return Result::Ok();
}

void ServerSdk::Close() {
    Impl& i = *impl_;
    {
        std::lock_guard<std::mutex> g(i.mu);
        i.stopping = true;
        // Wakes the reader blocked on the stream.
        if (i.events_fd >= 0) ::shutdown(i.events_fd, SHUT_RDWR);
    }
    i.cv.notify_all();
    const auto self = std::this_thread::get_id();
    if (self == i.reader.get_id() || self == i.dispatcher.get_id()) {
        return;  // called from a callback: the threads end on their own
    }
    std::lock_guard<std::mutex> g(i.close_mu);
    if (i.reader.joinable()) i.reader.join();
    if (i.dispatcher.joinable()) i.dispatcher.join();
}

}  // namespace respawn
