#!/usr/bin/env python3
"""A minimal Respawn dedicated game server for a parallel-mode fleet: one
process hosts several battle sessions at once (up to the fleet's
max_sessions_per_process; the cluster never sends more). Python stdlib only.

It speaks the agent's local SDK protocol (docs/sdk-protocol.md, §6.2):

  1. listens on a TCP port for game clients, then POST /v1/process_ready;
  2. reads GET /v1/events on a thread and answers health checks;
  3. on start_battle_session, records the session and activates it;
  4. game clients send lines: "SESSIONS" (answered with the ids of the
     sessions hosted now, space-separated, or "-" for none) and
     "END <battle_session_id>" (the session is over: POST
     /v1/terminate_battle_session, which frees its slot; answered OK or
     ERR <why>);
  5. on terminate_battle_session, forgets that session;
  6. on process_terminate: exit at once. It never ends by itself.
"""

import http.client
import json
import os
import socket
import sys
import threading
import time
import urllib.parse

ENDPOINT = urllib.parse.urlsplit(os.environ["RESPAWN_SDK_ENDPOINT"])
TOKEN = os.environ["RESPAWN_PROCESS_TOKEN"]


def log(*parts):
    print(time.strftime("%H:%M:%S ") + " ".join(str(p) for p in parts), flush=True)


def call(path, body):
    """POST a JSON body to the agent; raise RuntimeError unless it answers 200."""
    conn = http.client.HTTPConnection(ENDPOINT.hostname, ENDPOINT.port, timeout=60)
    try:
        conn.request(
            "POST",
            path,
            body=json.dumps(body),
            headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{path}: {resp.status} {data[:200]!r}")
        return json.loads(data)
    finally:
        conn.close()


class Game:
    def __init__(self):
        self.lock = threading.Lock()
        self.sessions = set()       # battle_session_ids hosted now
        self.exit = threading.Event()

    def start(self, session):
        bs = session["battle_session_id"]
        with self.lock:
            self.sessions.add(bs)
        log("battle session", bs, "- hosting", len(self.sessions))
        try:
            call("/v1/activate_battle_session", {"battle_session_id": bs})
        except Exception as e:
            log("activation failed:", e)

    def end(self, bs):
        with self.lock:
            if bs not in self.sessions:
                return "ERR not hosting " + bs
        try:
            call("/v1/terminate_battle_session", {"battle_session_id": bs})
        except Exception as e:
            return "ERR " + str(e)
        with self.lock:
            self.sessions.discard(bs)
        log("battle session", bs, "over")
        return "OK"

    def listing(self):
        with self.lock:
            return " ".join(sorted(self.sessions)) or "-"


def handle_event(game, event):
    kind = event.get("type")
    if kind == "health_check":
        try:
            call("/v1/health", {"seq": event["seq"], "healthy": True})
        except Exception as e:
            log("health answer failed:", e)
    elif kind == "start_battle_session":
        threading.Thread(target=game.start, args=(event["battle_session"],), daemon=True).start()
    elif kind == "terminate_battle_session":
        with game.lock:
            game.sessions.discard(event["battle_session_id"])
    elif kind == "process_terminate":
        log("process terminate:", event["reason"])
        game.exit.set()


def events_loop(game):
    while not game.exit.is_set():
        try:
            conn = http.client.HTTPConnection(ENDPOINT.hostname, ENDPOINT.port)
            conn.request("GET", "/v1/events", headers={"Authorization": "Bearer " + TOKEN})
            resp = conn.getresponse()
            if resp.status != 200:
                raise RuntimeError(f"events: {resp.status}")
            while True:
                line = resp.readline()
                if not line:
                    break
                if line.strip():
                    handle_event(game, json.loads(line))
        except Exception as e:
            log("event stream:", e)
        time.sleep(0.5)


def serve_client(game, sock):
    f = sock.makefile("rwb")
    try:
        for raw in f:
            words = raw.decode("utf-8", "replace").split()
            if words == ["SESSIONS"]:
                reply = game.listing()
            elif len(words) == 2 and words[0] == "END":
                reply = game.end(words[1])
            else:
                reply = "ERR unknown command"
            f.write((reply + "\n").encode())
            f.flush()
    except OSError:
        pass
    finally:
        sock.close()


def main():
    game = Game()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 0))
    listener.listen()
    port = listener.getsockname()[1]
    call("/v1/process_ready", {"port": port, "log_paths": []})
    log("process ready on port", port)
    threading.Thread(target=events_loop, args=(game,), daemon=True).start()

    def accept_loop():
        while True:
            sock, _ = listener.accept()
            threading.Thread(target=serve_client, args=(game, sock), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    game.exit.wait()
    log("exiting")
    sys.exit(0)


if __name__ == "__main__":
    main()
