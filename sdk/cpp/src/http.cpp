// The HTTP/1.1 client of http.h.
#include "http.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace respawn {
namespace http {

namespace {

// Longest status or header line accepted from the agent.
const size_t kMaxLine = 16 * 1024;

std::string lower(std::string s) {
    for (char& c : s) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return s;
}

std::string trim(const std::string& s) {
    size_t b = s.find_first_not_of(" \t");
    if (b == std::string::npos) return "";
    size_t e = s.find_last_not_of(" \t");
    return s.substr(b, e - b + 1);
}

}  // namespace

bool parse_endpoint(const std::string& url, Endpoint& out, std::string& error) {
    const std::string scheme = "http://";
    if (url.compare(0, scheme.size(), scheme) != 0) {
        error = "not an http:// URL: " + url;
        return false;
    }
    std::string rest = url.substr(scheme.size());
    size_t slash = rest.find('/');
    if (slash != std::string::npos) {
        if (rest.find_first_not_of('/', slash) != std::string::npos) {
            error = "the endpoint must not have a path: " + url;
            return false;
        }
        rest = rest.substr(0, slash);
    }
    size_t colon = rest.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size()) {
        error = "the endpoint must be http://host:port, not " + url;
        return false;
    }
    out.host = rest.substr(0, colon);
    out.port = rest.substr(colon + 1);
    if (out.host.size() > 2 && out.host.front() == '[' && out.host.back() == ']') {
        out.host = out.host.substr(1, out.host.size() - 2);
    }
    if (out.port.find_first_not_of("0123456789") != std::string::npos) {
        error = "bad port in " + url;
        return false;
    }
    return true;
}

Connection::~Connection() {
    if (fd_ >= 0) ::close(fd_);
}

bool Connection::open(const Endpoint& ep, int timeout_secs, std::string& error) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    int rc = ::getaddrinfo(ep.host.c_str(), ep.port.c_str(), &hints, &found);
    if (rc != 0) {
        error = "cannot resolve " + ep.host + ": " + ::gai_strerror(rc);
        return false;
    }
    error = "no address for " + ep.host;
    for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
        int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            error = std::string("socket: ") + std::strerror(errno);
            continue;
        }
        if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            error = "cannot connect to " + ep.host + ":" + ep.port + ": " + std::strerror(errno);
            ::close(fd);
            continue;
        }
        fd_ = fd;
        break;
    }
    ::freeaddrinfo(found);
    if (fd_ < 0) return false;
    if (timeout_secs > 0) {
        timeval tv{};
        tv.tv_sec = timeout_secs;
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    return true;
}

bool Connection::send_request(const std::string& method, const std::string& target,
                              const Headers& headers, const std::string& body,
                              std::string& error) {
    std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    for (const auto& h : headers) req += h.first + ": " + h.second + "\r\n";
    req += "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
    req += body;
    size_t sent = 0;
    while (sent < req.size()) {
        ssize_t n = ::send(fd_, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            error = std::string("send: ") + std::strerror(errno);
            return false;
        }
        sent += static_cast<size_t>(n);
    }
    return true;
}

bool Connection::fill(std::string& error) {
    char tmp[16 * 1024];
    while (true) {
        ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            error = (errno == EAGAIN || errno == EWOULDBLOCK) ? "timed out waiting for the agent"
                                                              : std::string("recv: ") + std::strerror(errno);
            return false;
        }
        if (n == 0) {
            error = "the agent closed the connection";
            return false;
        }
        buf_.append(tmp, static_cast<size_t>(n));
        return true;
    }
}

bool Connection::read_line(std::string& line, std::string& error) {
    while (true) {
        size_t nl = buf_.find('\n');
        if (nl != std::string::npos) {
            line = buf_.substr(0, nl);
            if (!line.empty() && line.back() == '\r') line.pop_back();
            buf_.erase(0, nl + 1);
            return true;
        }
        if (buf_.size() > kMaxLine) {
            error = "header line too long";
            return false;
        }
        if (!fill(error)) return false;
    }
}

bool Connection::read_head(Response& head, std::string& error) {
    std::string line;
    if (!read_line(line, error)) return false;
    // "HTTP/1.1 200 OK"
    if (line.compare(0, 5, "HTTP/") != 0 || line.size() < 12) {
        error = "not an HTTP answer: " + line.substr(0, 100);
        return false;
    }
    head.status = std::atoi(line.c_str() + 9);
    while (true) {
        if (!read_line(line, error)) return false;
        if (line.empty()) break;
        size_t colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string name = trim(line.substr(0, colon));
        std::string value = trim(line.substr(colon + 1));
        std::string lname = lower(name);
        if (lname == "transfer-encoding" && lower(value).find("chunked") != std::string::npos) {
            chunked_ = true;
        } else if (lname == "content-length") {
            length_ = std::atoll(value.c_str());
        }
        head.headers.emplace_back(std::move(name), std::move(value));
    }
    return true;
}

bool Connection::read_exact(size_t n, const std::function<bool(const char*, size_t)>& on_data,
                            bool& stopped, std::string& error) {
    while (n > 0) {
        if (buf_.empty() && !fill(error)) return false;
        size_t take = buf_.size() < n ? buf_.size() : n;
        if (!on_data(buf_.data(), take)) {
            stopped = true;
            return true;
        }
        buf_.erase(0, take);
        n -= take;
    }
    return true;
}

bool Connection::stream_body(const std::function<bool(const char*, size_t)>& on_data,
                             std::string& error) {
    bool stopped = false;
    if (chunked_) {
        while (true) {
            std::string line;
            if (!read_line(line, error)) return false;
            char* end = nullptr;
            unsigned long long size = std::strtoull(line.c_str(), &end, 16);
            if (end == line.c_str()) {
                error = "bad chunk size line";
                return false;
            }
            if (size == 0) return true;  // trailers, if any, are not needed
            if (!read_exact(static_cast<size_t>(size), on_data, stopped, error)) return false;
            if (stopped) return true;
            if (!read_line(line, error)) return false;  // the CRLF after the chunk
        }
    }
    if (length_ >= 0) return read_exact(static_cast<size_t>(length_), on_data, stopped, error);
    // No framing: the body ends with the connection.
    while (true) {
        if (!buf_.empty()) {
            if (!on_data(buf_.data(), buf_.size())) return true;
            buf_.clear();
        }
        std::string ignored;
        if (!fill(ignored)) return true;
    }
}

bool request(const Endpoint& ep, const std::string& method, const std::string& target,
             const Headers& headers, const std::string& body, int timeout_secs, Response& out,
             std::string& error) {
    Connection conn;
    if (!conn.open(ep, timeout_secs, error)) return false;
    if (!conn.send_request(method, target, headers, body, error)) return false;
    if (!conn.read_head(out, error)) return false;
    if (method == "HEAD" || out.status == 204 || out.status == 304) return true;
    return conn.stream_body(
        [&out](const char* data, size_t n) {
            out.body.append(data, n);
            return true;
        },
        error);
}

}  // namespace http
}  // namespace respawn
