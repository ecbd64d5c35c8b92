#!/usr/bin/env python3
"""A minimal Respawn dedicated game server (simple mode), Python stdlib only.

It speaks the agent's local SDK protocol (docs/sdk-protocol.md) directly:

  1. listens on a TCP port for game clients, then POST /v1/process_ready;
  2. reads GET /v1/events (one JSON event per line) on a thread, reconnecting
     if the stream drops, and answers health checks with POST /v1/health;
  3. on start_battle_session, POST /v1/activate_battle_session;
  4. game clients send "JOIN <player_battle_session_id>" (answered OK or
     ERR <why>) and "LEAVE"; closing the connection also leaves;
  5. when every player who joined has left, or after DS_SESSION_SECS, or when
     the platform terminates the session: POST /v1/process_ending, exit 0;
  6. on process_terminate: exit at once.
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
SESSION_SECS = float(os.environ.get("DS_SESSION_SECS", "600"))
LOG_DIR = os.environ.get("RESPAWN_LOG_DIR")
LOG_PATH = os.path.join(LOG_DIR, "python-ds.log") if LOG_DIR else None


def log(*parts):
    line = time.strftime("%H:%M:%S ") + " ".join(str(p) for p in parts)
    print(line, flush=True)
    if LOG_PATH:
        with open(LOG_PATH, "a") as f:
            f.write(line + "\n")


class SdkError(Exception):
    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.code = code
        self.message = message


def call(path, body):
    """POST a JSON body to the agent; raise SdkError unless it answers 200."""
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
            try:
                err = json.loads(data)
                raise SdkError(resp.status, err.get("error"), err.get("message"))
            except ValueError:
                raise SdkError(resp.status, "unknown", data[:200])
        return json.loads(data)
    finally:
        conn.close()


class Game:
    def __init__(self):
        self.lock = threading.Lock()
        self.session_id = None      # battle_session_id once assigned
        self.players = set()        # player_battle_session_ids connected now
        self.anyone_joined = False
        self.exit = threading.Event()
        self.call_ending = True     # False when the platform told us to stop

    def end(self, why, call_ending=True):
        log("ending:", why)
        with self.lock:
            self.call_ending = self.call_ending and call_ending
        self.exit.set()

    # --- SDK callbacks -------------------------------------------------

    def on_health_check(self):
        return True

    def on_start_battle_session(self, session):
        bs = session["battle_session_id"]
        with self.lock:
            if self.session_id is not None:
                log("already hosting", self.session_id, "- ignored", bs)
                return
            self.session_id = bs
        log("battle session", bs, "with", len(session["players"]), "players")
        timer = threading.Timer(SESSION_SECS, self.end, ["session time is up"])
        timer.daemon = True
        timer.start()
        try:
            call("/v1/activate_battle_session", {"battle_session_id": bs})
            log("activated", bs)
        except Exception as e:
            log("activation failed:", e)

    def on_terminate_battle_session(self, battle_session_id):
        if battle_session_id == self.session_id:
            self.end("battle session terminated by the platform")

    def on_process_terminate(self, reason):
        self.end("process terminate: " + reason, call_ending=False)


def handle_event(game, event):
    kind = event.get("type")
    if kind == "health_check":
        healthy = game.on_health_check()
        try:
            call("/v1/health", {"seq": event["seq"], "healthy": healthy})
        except Exception as e:
            log("health answer failed:", e)
    elif kind == "start_battle_session":
        # Activation may take a while: keep reading events meanwhile.
        threading.Thread(
            target=game.on_start_battle_session, args=(event["battle_session"],), daemon=True
        ).start()
    elif kind == "terminate_battle_session":
        game.on_terminate_battle_session(event["battle_session_id"])
    elif kind == "process_terminate":
        game.on_process_terminate(event["reason"])
    # Unknown event types are ignored: newer agents may send more.


def events_loop(game):
    """Keep GET /v1/events open; one JSON event per line."""
    while not game.exit.is_set():
        try:
            conn = http.client.HTTPConnection(ENDPOINT.hostname, ENDPOINT.port)
            conn.request("GET", "/v1/events", headers={"Authorization": "Bearer " + TOKEN})
            resp = conn.getresponse()
            if resp.status != 200:
                raise SdkError(resp.status, "events", resp.read()[:200])
            while True:
                line = resp.readline()
                if not line:
                    break  # the agent closed the stream
                if line.strip():
                    handle_event(game, json.loads(line))
        except Exception as e:
            log("event stream:", e)
        time.sleep(0.5)


def serve_player(game, sock):
    """One game client = one player."""
    joined = None
    f = sock.makefile("rwb")
    try:
        for raw in f:
            words = raw.decode("utf-8", "replace").split()
            if not words:
                continue
            if words[0] == "JOIN" and len(words) == 2 and joined is None:
                with game.lock:
                    bs = game.session_id
                if bs is None:
                    reply = "ERR no battle session"
                else:
                    try:
                        call("/v1/accept_player_battle_session",
                             {"battle_session_id": bs, "player_battle_session_id": words[1]})
                        joined = (bs, words[1])
                        with game.lock:
                            game.players.add(words[1])
                            game.anyone_joined = True
                        reply = "OK"
                    except SdkError as e:
                        reply = "ERR " + str(e)
            elif words[0] == "LEAVE":
                leave(game, joined)
                joined = None
                f.write(b"OK\n")
                f.flush()
                return
            else:
                reply = "ERR unknown command"
            f.write((reply + "\n").encode())
            f.flush()
    except OSError:
        pass
    finally:
        leave(game, joined)
        sock.close()


def leave(game, joined):
    if joined is None:
        return
    bs, pbs = joined
    try:
        call("/v1/remove_player_battle_session",
             {"battle_session_id": bs, "player_battle_session_id": pbs})
    except Exception as e:
        log("remove failed:", e)
    with game.lock:
        game.players.discard(pbs)
        everyone_left = game.anyone_joined and not game.players
    if everyone_left:
        game.end("every player left")


def main():
    game = Game()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 0))
    listener.listen()
    port = listener.getsockname()[1]
    log("listening on port", port, "as", os.environ.get("RESPAWN_PROCESS_ID"))

    call("/v1/process_ready", {"port": port, "log_paths": [LOG_PATH] if LOG_PATH else []})
    log("process ready")
    threading.Thread(target=events_loop, args=(game,), daemon=True).start()

    def accept_loop():
        while True:
            sock, _ = listener.accept()
            threading.Thread(target=serve_player, args=(game, sock), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()

    game.exit.wait()
    if game.call_ending:
        try:
            call("/v1/process_ending", {})
        except Exception as e:
            log("process_ending failed:", e)
    log("exiting")
    # Daemon threads (event stream, players) die with the process.
    sys.exit(0)


if __name__ == "__main__":
    main()
