// A small HTTP/1.1 client over POSIX TCP sockets, enough for the agent's
// local API: one request per connection (`Connection: close`), bodies with
// Content-Length, chunked or read to the end, and a streamed body for the
// event stream. Internal to the SDK. Never throws.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace respawn {
namespace http {

using Headers = std::vector<std::pair<std::string, std::string>>;

// Where the agent listens, parsed from "http://host:port[/]".
struct Endpoint {
    std::string host;
    std::string port;
};

bool parse_endpoint(const std::string& url, Endpoint& out, std::string& error);

struct Response {
    int status = 0;
    Headers headers;
    std::string body;
};

// One connection carrying one request.
class Connection {
  public:
    Connection() = default;
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Connects; `timeout_secs` bounds every later read and write (0: none).
    bool open(const Endpoint& ep, int timeout_secs, std::string& error);
    // Sends the request line, `headers` (plus Host, Content-Length and
    // Connection: close) and `body`.
    bool send_request(const std::string& method, const std::string& target,
                      const Headers& headers, const std::string& body, std::string& error);
    // Reads the status line and headers.
    bool read_head(Response& head, std::string& error);
    // Reads the body as its framing says, passing each piece to `on_data`
    // (which returns false to stop early).
    bool stream_body(const std::function<bool(const char*, size_t)>& on_data, std::string& error);
    // The socket, for shutdown() from another thread; -1 when closed.
    int fd() const { return fd_; }

  private:
    int fd_ = -1;
    std::string buf_;  // bytes read but not consumed
    bool chunked_ = false;
    long long length_ = -1;  // Content-Length, or -1

    bool fill(std::string& error);  // reads more into buf_; false on EOF/error
    bool read_line(std::string& line, std::string& error);
    bool read_exact(size_t n, const std::function<bool(const char*, size_t)>& on_data,
                    bool& stopped, std::string& error);
};

// Opens a connection, sends one request and reads the whole answer.
bool request(const Endpoint& ep, const std::string& method, const std::string& target,
             const Headers& headers, const std::string& body, int timeout_secs, Response& out,
             std::string& error);

}  // namespace http
}  // namespace respawn
