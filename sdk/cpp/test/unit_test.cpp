// Unit tests of the SDK's internals (JSON, endpoint parsing, errors without
// an agent). `make -C sdk/cpp test` builds and runs them; the cargo test
// `cpp_sdk` runs that target. Exits non-zero on the first failure.
#include <cstdlib>
#include <iostream>
#include <string>

#include "http.h"
#include "json.h"
#include "respawn/server_sdk.h"

namespace {

int g_failures = 0;

void expect(bool ok, const std::string& what) {
    if (!ok) {
        std::cerr << "FAILED: " << what << std::endl;
        ++g_failures;
    }
}

void json_reads_the_protocol_shapes() {
    using respawn::json::Value;
    Value v;
    std::string err;
    const std::string ev =
        "{\"type\":\"start_battle_session\",\"unknown\":[1,{\"x\":null}],\"battle_session\":"
        "{\"battle_session_id\":\"bs-1\",\"max_players\":4,\"properties\":{\"map\":\"dust\"},"
        "\"players\":[{\"player_id\":\"p\",\"player_battle_session_id\":\"pbs-1\","
        "\"player_data\":\"{\\\"team\\\":\\\"red\\\"}\"}],\"port\":7777,\"ok\":true}}";
    expect(respawn::json::parse(ev, v, err), "parse an event: " + err);
    const Value& bs = v["battle_session"];
    expect(bs["battle_session_id"].str() == "bs-1", "string member");
    expect(bs["max_players"].num() == 4 && bs["port"].num() == 7777, "numbers");
    expect(bs["properties"]["map"].str() == "dust", "nested object");
    expect(bs["players"].items().size() == 1, "array");
    expect(bs["players"].items()[0]["player_data"].str() == "{\"team\":\"red\"}", "escaped quotes");
    expect(v["missing"]["deeper"].str("none") == "none", "missing members are null");

    expect(respawn::json::parse("\"a\\u00e9\\ud83d\\ude00\\n\"", v, err), "unicode escapes");
    expect(v.str() == "a\xc3\xa9\xf0\x9f\x98\x80\n", "UTF-8 of \\u escapes and surrogate pairs");

    for (const char* bad : {"", "{", "{\"a\":}", "[1,]", "\"unterminated", "{\"a\":1} x", "tru",
                            "\"\x01\""}) {
        expect(!respawn::json::parse(bad, v, err), std::string("rejects ") + bad);
    }
    std::string deep(200, '[');
    expect(!respawn::json::parse(deep, v, err), "rejects deep nesting");
}

void json_writes_strings() {
    const std::string s = "q\"b\\n\n\x01 é";
    const std::string quoted = respawn::json::quote(s);
    expect(quoted == "\"q\\\"b\\\\n\\n\\u0001 é\"", "quote: " + quoted);
    respawn::json::Value v;
    std::string err;
    expect(respawn::json::parse(quoted, v, err) && v.str() == s, "quote round-trips");
}

void endpoints() {
    respawn::http::Endpoint ep;
    std::string err;
    expect(respawn::http::parse_endpoint("http://127.0.0.1:41237", ep, err) && ep.host == "127.0.0.1" &&
               ep.port == "41237",
           "plain endpoint");
    expect(respawn::http::parse_endpoint("http://localhost:80/", ep, err) && ep.host == "localhost",
           "trailing slash");
    expect(respawn::http::parse_endpoint("http://[::1]:9", ep, err) && ep.host == "::1", "IPv6");
    for (const char* bad : {"https://127.0.0.1:1", "http://127.0.0.1", "http://h:x", "http://h:1/api"}) {
        expect(!respawn::http::parse_endpoint(bad, ep, err), std::string("rejects ") + bad);
    }
}

void errors_are_values() {
    ::unsetenv("RESPAWN_SDK_ENDPOINT");
    respawn::ServerSdk unconfigured;
    respawn::Result r = unconfigured.Init();
    expect(!r.IsSuccess() && r.error == "missing_env" && r.http_status == 0, "missing_env: " + r.ToString());
    r = unconfigured.ProcessReady(7777, {});
    expect(r.error == "missing_env", "calls fail with missing_env: " + r.ToString());

    // Nothing listens on port 1: a transport error, not an exception.
    respawn::ServerSdk nowhere("http://127.0.0.1:1", "proc-x", "token");
    expect(nowhere.Init().IsSuccess(), "explicit configuration");
    r = nowhere.ActivateBattleSession("bs-1");
    expect(r.error == "transport" && r.http_status == 0, "transport: " + r.ToString());
    respawn::VirtualServerResponse out;
    r = nowhere.InvokeVirtualServer("vs", "GET", "/", {}, "", out);
    expect(r.error == "transport", "invoke transport: " + r.ToString());
    r = nowhere.ProcessReady(7777, {});
    expect(r.error == "transport", "ProcessReady transport: " + r.ToString());
    r = nowhere.ProcessReady(7777, {});
    expect(r.error == "transport", "a failed ProcessReady may be retried: " + r.ToString());
    nowhere.Close();
    nowhere.Close();
}

}  // namespace

int main() {
    json_reads_the_protocol_shapes();
    json_writes_strings();
    endpoints();
    errors_are_values();
    if (g_failures != 0) {
        std::cerr << g_failures << " failure(s)" << std::endl;
        return 1;
    }
    std::cout << "respawn C++ SDK unit tests: ok" << std::endl;
    return 0;
}
