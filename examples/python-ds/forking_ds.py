#!/usr/bin/env python3
"""A forking Respawn DS (forking / shared-memory mode), Python stdlib only.

The agent launches this script once per host, as the forking parent. It:

  1. loads what its children share (here: a big table, standing for maps and
     assets that fork() lets every child share copy-on-write);
  2. POST /v1/forking/process_ready: it is a forking parent; it holds no
     battle session, needs no event stream, answers no health check, and
     starts no thread (threads and fork() do not mix);
  3. loops: QueryDsInstancePerCVMConfig and QueryAvailableDsInstanceCount
     tell how many forked processes the fleet wants on this host and how many
     are registered; it forks while fewer run, and reaps the ones that exit.

Each forked child is then an ordinary DS (ds.py's game): it calls
POST /v1/process_ready with the token it inherited and its own pid, gets its
own process id and token back, and uses them from then on.
"""

import http.client
import json
import os
import socket
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ds  # noqa: E402  (the simple-mode sample: its game and SDK calls)

ENDPOINT = urllib.parse.urlsplit(os.environ["RESPAWN_SDK_ENDPOINT"])
PARENT_TOKEN = os.environ["RESPAWN_PROCESS_TOKEN"]
SHARED_TABLE = [i * i for i in range(200_000)]  # shared copy-on-write


def parent_call(path, body):
    """A blocking call of the forking parent (no threads)."""
    conn = http.client.HTTPConnection(ENDPOINT.hostname, ENDPOINT.port, timeout=30)
    try:
        conn.request("POST", path, body=json.dumps(body),
                     headers={"Authorization": "Bearer " + PARENT_TOKEN,
                              "Content-Type": "application/json"})
        resp = conn.getresponse()
        data = json.loads(resp.read() or b"{}")
        if resp.status != 200:
            raise ds.SdkError(resp.status, data.get("error"), data.get("message"))
        return data
    finally:
        conn.close()


def child_main():
    """A forked DS: register as itself, then play ds.py's game."""
    game = ds.Game()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 0))
    listener.listen()
    port = listener.getsockname()[1]
    # ProcessReady with the inherited (parent's) token and our pid: the
    # answer carries this process's own id and token.
    answer = ds.call("/v1/process_ready", {"port": port, "log_paths": [], "pid": os.getpid()})
    ds.TOKEN = answer["process_token"]
    os.environ["RESPAWN_PROCESS_ID"] = answer["process_id"]
    ds.LOG_PATH = os.path.join(answer["log_dir"], "python-ds.log")
    ds.log("forked process", os.getpid(), "registered as", answer["process_id"], "port", port)
    threading.Thread(target=ds.events_loop, args=(game,), daemon=True).start()

    def accept_loop():
        while True:
            sock, _ = listener.accept()
            threading.Thread(target=ds.serve_player, args=(game, sock), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    game.exit.wait()
    if game.call_ending:
        try:
            ds.call("/v1/process_ending", {})
        except Exception as e:
            ds.log("process_ending failed:", e)
    ds.log("forked process exiting")
    sys.stdout.flush()
    os._exit(0)


def main():
    parent_call("/v1/forking/process_ready", {"log_paths": []})
    print("forking parent", os.getpid(), "ready", flush=True)
    children = set()
    while True:
        # Reap the children that exited.
        while children:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                children.clear()
                break
            if pid == 0:
                break
            children.discard(pid)
        wanted = parent_call("/v1/forking/query_ds_instance_per_cvm_config", {})["ds_instance_per_cvm"]
        running = parent_call("/v1/forking/query_available_ds_instance_count", {})["available_ds_instance_count"]
        # Children not yet registered are not counted by the agent yet.
        if len(children) < wanted and running < wanted:
            pid = os.fork()
            if pid == 0:
                try:
                    child_main()
                finally:
                    os._exit(1)
            children.add(pid)
            print("forked", pid, flush=True)
            continue
        time.sleep(0.2)


if __name__ == "__main__":
    main()
