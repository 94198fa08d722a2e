"""Memory soak: distinct messages full of never-seen words sent to a real Rasa server, its RSS printed as it goes.

Usage: ``python scripts/soak_memory.py [--messages 20000] [--every 1000] [--words 40] [--via parse|webhook]
[--unpatched]`` (``make soak-memory``). Starts the action server and the Rasa server (``python -m rasa_ext
run``, or Rasa's own ``python -m rasa run`` with ``--unpatched``, the "before" figure) on free ports with
a fresh SQLite database, as the tests do, sends the messages from a few concurrent clients, prints the
Rasa server's resident memory every ``--every`` messages, then stops both servers. Every word of every
message is new (random letters), the worst case for spaCy's vocabulary (components/spacy_vocabulary.py).

``--via parse`` (the default) posts each message to Rasa's ``/model/parse``: the NLU pipeline, where
spaCy's vocabulary lives, at a few ms a message, so 20,000 messages take minutes. For this the
measured server (on 127.0.0.1 only) runs with its HTTP API on, behind a random token. ``--via webhook``
sends them as visitors through the REST channel (a new visitor every 20 messages), full turns with an
action call each: about 0.3 s a message on 2 busy cores, mostly Rasa's jsonschema check of every action
response. A message that gets no reply (webhook) or no intent (parse) is counted and reported.
"""

from __future__ import annotations

import argparse
import random
import secrets
import string
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional, Sequence

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.servers import Servers  # noqa: E402  (the harness the tests use too)


class SoakServers(Servers):
    """The tests' servers, with Rasa's own ``python -m rasa`` if ``unpatched`` and the HTTP API on (behind
    a random token) if ``api``."""

    def __init__(self, folder: Path, unpatched: bool, api: bool) -> None:
        super().__init__(folder)
        self.patched = not unpatched
        self.api_token = secrets.token_hex(16) if api else None

    def rasa_command(self, patched: bool = True) -> List[str]:
        api = ["--enable-api", "--auth-token", self.api_token] if self.api_token else []
        return super().rasa_command(patched and self.patched) + api


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def distinct_message(rnd: random.Random, words: int) -> str:
    return " ".join("".join(rnd.choices(string.ascii_lowercase, k=rnd.randint(6, 10))) for _ in range(words))


def soak(servers: SoakServers, messages: int, every: int, words: int, concurrency: int, seed: int) -> int:
    pid = servers.processes["rasa"].pid
    if servers.api_token:
        url, params = f"{servers.url}/model/parse", {"token": servers.api_token}
    else:
        url, params = f"{servers.url}/webhooks/rest/webhook", {}
    start_rss = rss_mb(pid)
    print(f"Rasa server pid {pid}: {start_rss:.0f} MB before the first message", flush=True)
    print(f"{'messages':>9} {'RSS MB':>8} {'growth':>8} {'seconds':>8} {'no reply':>9}", flush=True)
    lock = threading.Lock()
    state = {"sent": 0, "silent": 0}
    started = time.monotonic()
    stop = threading.Event()

    def visitor(worker: int) -> None:
        rnd = random.Random(seed * 1000 + worker)
        session = requests.Session()
        sender = uuid.uuid4().hex
        while True:
            with lock:
                if state["sent"] >= messages or stop.is_set():
                    return
                state["sent"] += 1
                number = state["sent"]
            if number % 20 == 0:
                sender = uuid.uuid4().hex  # short conversations: the tracker's growth is not measured here
            text = distinct_message(rnd, words)
            body = {"text": text} if servers.api_token else {"sender": sender, "message": text}
            try:
                response = session.post(url, json=body, params=params, timeout=60)
                answer = response.json() if response.status_code == 200 else None
                silent = not (answer.get("intent") if servers.api_token else answer)
            except (requests.RequestException, ValueError, AttributeError):
                silent = True
            with lock:
                state["silent"] += silent
                if number % every == 0:
                    rss = rss_mb(pid)
                    print(f"{number:>9} {rss:>8.0f} {rss - start_rss:>+8.0f} {time.monotonic() - started:>8.0f} "
                          f"{state['silent']:>9}", flush=True)

    with ThreadPoolExecutor(concurrency) as pool:
        try:
            list(pool.map(visitor, range(concurrency)))
        finally:
            stop.set()  # Ctrl-C: the clients stop after their current message
    end_rss = rss_mb(pid)
    print(f"After {messages} distinct messages ({messages * words} new words): RSS {end_rss:.0f} MB "
          f"({end_rss - start_rss:+.0f} MB), {state['silent']} without a reply", flush=True)
    return 1 if state["silent"] else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--every", type=int, default=1_000, help="print RSS every this many messages")
    parser.add_argument("--words", type=int, default=40, help="new words per message")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--via", choices=("parse", "webhook"), default="parse",
                        help="Rasa's /model/parse (NLU only, fast) or the REST channel (whole turns)")
    parser.add_argument("--unpatched", action="store_true", help="Rasa's own server, without rasa_ext's patches")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="soak-memory-"))
    servers = SoakServers(folder, unpatched=args.unpatched, api=args.via == "parse")
    print(f"Starting the servers (python -m {servers.module}, messages via {args.via}); logs in {folder}",
          flush=True)
    servers.start()
    try:
        return soak(servers, args.messages, args.every, args.words, args.concurrency, args.seed)
    finally:
        servers.stop()


if __name__ == "__main__":
    sys.exit(main())
