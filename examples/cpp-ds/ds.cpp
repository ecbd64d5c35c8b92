// A sample Respawn dedicated game server in C++ (simple mode), built on the
// C++ Server SDK (sdk/cpp). It behaves like the Rust sample DS and the Python
// one (examples/python-ds):
//
//   1. listens on a TCP port for game clients, then calls ProcessReady;
//   2. on OnStartBattleSession, records the session and activates it;
//   3. game clients connect to the TCP port, one connection per player, and
//      send lines:
//        JOIN <player_battle_session_id>  -> AcceptPlayerBattleSession; OK or ERR <why>
//        LEAVE (or closing the connection) -> RemovePlayerBattleSession; OK
//        DISCONNECT                        -> DisconnectPlayerBattleSession; OK
//                                             (the player may JOIN again later)
//        WHO                               -> OK <process id>
//        VS <vs> [path]                    -> InvokeVirtualServer (GET); VS <status> <body>
//        END                               -> end the session now; OK
//   4. ends the session when every player who joined has left, after
//      --session-secs (DS_SESSION_SECS, default 600), or when the platform
//      terminates it: ProcessEnding, then exit 0;
//   5. exits at once on OnProcessTerminate.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "respawn/server_sdk.h"

namespace {

// Longest line a game client may send.
const size_t kMaxLine = 512;

std::mutex g_log_mu;
std::string g_log_path;

void log(const std::string& line) {
    std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    char stamp[16];
    std::strftime(stamp, sizeof stamp, "%H:%M:%S", &local);
    std::lock_guard<std::mutex> g(g_log_mu);
    std::cout << stamp << " " << line << std::endl;
    if (!g_log_path.empty()) {
        std::ofstream f(g_log_path, std::ios::app);
        f << stamp << " " << line << "\n";
    }
}

// The game: one battle session per process lifetime.
class Game {
  public:
    explicit Game(respawn::ServerSdk& sdk) : sdk_(sdk) {}

    // Ends the game; `call_ending` false when the platform told us to stop.
    void End(const std::string& why, bool call_ending = true) {
        log("ending: " + why);
        std::lock_guard<std::mutex> g(mu_);
        call_ending_ = call_ending_ && call_ending;
        over_ = true;
        cv_.notify_all();
    }

    // Blocks until the game is over; true if ProcessEnding should be called.
    bool WaitOver(std::chrono::seconds session_len) {
        std::unique_lock<std::mutex> g(mu_);
        while (!over_) {
            if (session_id_.empty()) {
                cv_.wait(g);
            } else if (cv_.wait_until(g, started_ + session_len) == std::cv_status::timeout &&
                       !over_) {
                g.unlock();
                End("session time is up");
                g.lock();
            }
        }
        return call_ending_;
    }

    std::string SessionId() {
        std::lock_guard<std::mutex> g(mu_);
        return session_id_;
    }

    // --- SDK callbacks (on the SDK's callback thread) ---------------------

    void OnStartBattleSession(const respawn::BattleSession& bs) {
        {
            std::lock_guard<std::mutex> g(mu_);
            if (!session_id_.empty()) {
                log("already hosting " + session_id_ + "; ignored " + bs.battle_session_id);
                return;
            }
            session_id_ = bs.battle_session_id;
            started_ = std::chrono::steady_clock::now();
            cv_.notify_all();
        }
        log("battle session " + bs.battle_session_id + " with " + std::to_string(bs.players.size()) +
            " players");
        // Blocking SDK calls are fine here: health checks are answered on
        // another SDK thread meanwhile.
        respawn::Result r = sdk_.ActivateBattleSession(bs.battle_session_id);
        log(r.IsSuccess() ? "activated " + bs.battle_session_id : "activation failed: " + r.ToString());
    }

    void OnTerminateBattleSession(const std::string& id) {
        if (id == SessionId()) End("battle session terminated by the platform");
    }

    void OnProcessTerminate(const std::string& reason) {
        End("process terminate: " + reason, false);
    }

    // --- Players -----------------------------------------------------------

    // JOIN: true and "" if admitted, else false and the reason.
    bool Join(const std::string& pbs, std::string& why) {
        std::string bs = SessionId();
        if (bs.empty()) {
            why = "no battle session on this server";
            return false;
        }
        respawn::Result r = sdk_.AcceptPlayerBattleSession(bs, pbs);
        if (!r.IsSuccess()) {
            log("player " + pbs + " rejected: " + r.ToString());
            why = r.ToString();
            return false;
        }
        log("player " + pbs + " accepted");
        std::lock_guard<std::mutex> g(mu_);
        disconnected_.erase(pbs);
        connected_.insert(pbs);
        anyone_joined_ = true;
        return true;
    }

    // The player left for good (`remove`) or dropped and may come back.
    void Part(const std::string& pbs, bool remove) {
        std::string bs = SessionId();
        respawn::Result r = remove ? sdk_.RemovePlayerBattleSession(bs, pbs)
                                   : sdk_.DisconnectPlayerBattleSession(bs, pbs);
        log(std::string(remove ? "removed " : "disconnected ") + pbs +
            (r.IsSuccess() ? "" : " (" + r.ToString() + ")"));
        bool everyone_left = false;
        {
            std::lock_guard<std::mutex> g(mu_);
            connected_.erase(pbs);
            if (remove) disconnected_.erase(pbs);
            else disconnected_.insert(pbs);
            everyone_left = anyone_joined_ && connected_.empty() && disconnected_.empty();
        }
        if (everyone_left) End("every player left");
    }

    std::string Vs(const std::string& vs, const std::string& path) {
        respawn::VirtualServerResponse resp;
        respawn::Result r = sdk_.InvokeVirtualServer(vs, "GET", path, {}, "", resp);
        if (!r.IsSuccess()) return "ERR " + r.ToString();
        std::string body = resp.body;
        for (char& c : body) {
            if (c == '\n' || c == '\r') c = ' ';
        }
        return "VS " + std::to_string(resp.status) + " " + body;
    }

    respawn::ServerSdk& Sdk() { return sdk_; }

  private:
    respawn::ServerSdk& sdk_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::string session_id_;
    std::chrono::steady_clock::time_point started_;
    std::set<std::string> connected_;
    std::set<std::string> disconnected_;
    bool anyone_joined_ = false;
    bool over_ = false;
    bool call_ending_ = true;
};

bool send_line(int fd, const std::string& line) {
    std::string out = line + "\n";
    size_t sent = 0;
    while (sent < out.size()) {
        ssize_t n = ::send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) return false;
        sent += static_cast<size_t>(n);
    }
    return true;
}

// One game client = one player.
void serve_player(Game& game, int fd) {
    std::string buf;
    std::string joined;  // player battle session id, once admitted
    char tmp[1024];
    bool open = true;
    while (open) {
        size_t nl = buf.find('\n');
        if (nl == std::string::npos) {
            if (buf.size() > kMaxLine) {
                send_line(fd, "ERR line too long");
                break;
            }
            ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
            if (n <= 0) break;
            buf.append(tmp, static_cast<size_t>(n));
            continue;
        }
        std::istringstream words(buf.substr(0, nl));
        buf.erase(0, nl + 1);
        std::string cmd, arg, arg2;
        words >> cmd >> arg >> arg2;
        std::string reply;
        if (cmd.empty()) {
            continue;
        } else if (cmd == "JOIN" && arg.empty()) {
            reply = "ERR usage: JOIN <player_battle_session_id>";
        } else if (cmd == "JOIN" && !joined.empty()) {
            reply = "ERR already joined on this connection";
        } else if (cmd == "JOIN") {
            std::string why;
            if (game.Join(arg, why)) {
                joined = arg;
                reply = "OK";
            } else {
                reply = "ERR " + why;
            }
        } else if (cmd == "LEAVE" || cmd == "DISCONNECT") {
            // Report before answering, so a client that reads OK knows the
            // platform has been told.
            if (!joined.empty()) game.Part(joined, cmd == "LEAVE");
            joined.clear();
            reply = "OK";
            open = false;
        } else if (cmd == "WHO") {
            reply = "OK " + game.Sdk().ProcessId();
        } else if (cmd == "VS" && !arg.empty()) {
            reply = game.Vs(arg, arg2.empty() ? "/" : arg2);
        } else if (cmd == "END") {
            game.End("END requested");
            reply = "OK";
        } else {
            reply = "ERR unknown command " + cmd;
        }
        if (!send_line(fd, reply)) break;
    }
    // The connection closed without LEAVE: the player is gone.
    if (!joined.empty()) game.Part(joined, true);
    ::close(fd);
}

int listen_on(uint16_t port, uint16_t& bound) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons(port);
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 64) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        ::close(fd);
        return -1;
    }
    bound = ntohs(addr.sin_port);
    return fd;
}

}  // namespace

int main(int argc, char** argv) {
    long port_arg = 0;
    const char* secs_env = std::getenv("DS_SESSION_SECS");
    long session_secs = secs_env != nullptr ? std::atol(secs_env) : 600;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string flag = argv[i];
        if (flag == "--port") port_arg = std::atol(argv[i + 1]);
        else if (flag == "--session-secs") session_secs = std::atol(argv[i + 1]);
        else {
            std::cerr << "usage: " << argv[0] << " [--port N] [--session-secs N]" << std::endl;
            return 2;
        }
    }
    if (port_arg < 0 || port_arg > 65535 || session_secs <= 0) {
        std::cerr << "bad --port or --session-secs" << std::endl;
        return 2;
    }

    respawn::ServerSdk sdk;
    respawn::Result init = sdk.Init();
    if (!init.IsSuccess()) {
        std::cerr << init.ToString() << std::endl;
        return 1;
    }
    if (!sdk.LogDir().empty()) g_log_path = sdk.LogDir() + "/cpp-ds.log";
    sdk.SetLogger([](const std::string& line) { log("sdk: " + line); });

    uint16_t port = 0;
    int listener = listen_on(static_cast<uint16_t>(port_arg), port);
    if (listener < 0) {
        log(std::string("cannot listen: ") + std::strerror(errno));
        return 1;
    }
    log("listening on port " + std::to_string(port) + " as " + sdk.ProcessId());

    Game game(sdk);
    sdk.OnHealthCheck([] {
        // Runs on the SDK's event thread: answer at once.
        static std::once_flag first;
        std::call_once(first, [] { log("first health check"); });
        return true;
    });
    sdk.OnStartBattleSession([&game](const respawn::BattleSession& bs) { game.OnStartBattleSession(bs); });
    sdk.OnTerminateBattleSession([&game](const std::string& id) { game.OnTerminateBattleSession(id); });
    sdk.OnProcessTerminate([&game](const std::string& reason) { game.OnProcessTerminate(reason); });

    std::vector<std::string> log_paths;
    if (!g_log_path.empty()) log_paths.push_back(g_log_path);
    respawn::Result ready = sdk.ProcessReady(port, log_paths);
    if (!ready.IsSuccess()) {
        log("ProcessReady failed: " + ready.ToString());
        return 1;
    }
    log("process ready");

    std::thread([&game, listener] {
        while (true) {
            int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) {
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
                continue;
            }
            std::thread(serve_player, std::ref(game), fd).detach();
        }
    }).detach();

    if (game.WaitOver(std::chrono::seconds(session_secs))) {
        respawn::Result r = sdk.ProcessEnding();
        log(r.IsSuccess() ? "process ending" : "ProcessEnding failed: " + r.ToString());
    }
    sdk.Close();
    log("exiting");
    std::fflush(nullptr);
    // Player threads are still blocked on their sockets: end the process
    // without running destructors under them.
    std::_Exit(0);
}
