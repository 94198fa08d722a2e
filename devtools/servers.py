"""Starts the real action server and Rasa server, on free local ports, with a fresh SQLite database for
conversations and consultation requests (or a given PostgreSQL database): the harness of the end-to-end
tests and of the scripts that need real servers (scripts/soak_memory.py). Also a local stand-in for an
integrator's callback endpoint (:class:`Receiver`)."""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import requests
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "clinic.tar.gz"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Servers:
    """The assistant's two servers, as ``make run`` starts them."""

    def __init__(self, folder: Path, credentials: Optional[Path] = None,
                 env: Optional[Dict[str, str]] = None, db_url: Optional[str] = None) -> None:
        """Prepares the servers; nothing runs until :meth:`start`.

        Args:
            folder: where the database, the endpoints file and the servers' logs go.
            credentials: the Rasa credentials file (default: the project's ``credentials.yml``).
            env: extra environment variables for both servers.
            db_url: a PostgreSQL URL (``postgresql://user@host:port/db``) to use instead of a SQLite file.
        """
        self.folder = folder
        self.credentials = credentials or ROOT / "credentials.yml"
        self.db = folder / "conversations.db"
        self.action_port = free_port()
        self.rasa_port = free_port()
        self.endpoints = folder / "endpoints.yml"
        if db_url:  # the keys of endpoints.postgres.yml
            url = make_url(db_url)
            database = (f"  dialect: postgresql\n  url: {url.host}\n  port: {url.port or 5432}\n  db: {url.database}\n"
                        f"  username: {url.username}\n" + (f"  password: {url.password}\n" if url.password else ""))
        else:
            database = f"  dialect: sqlite\n  db: {self.db}\n"
        self.endpoints.write_text(
            f'action_endpoint:\n  url: "http://127.0.0.1:{self.action_port}/webhook"\n'
            "  headers:\n    X-Action-Token: ${ACTION_SERVER_TOKEN}\n"
            f"tracker_store:\n  type: rasa_ext.tracker_store.ResilientSQLTrackerStore\n{database}")
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "CLINIC_ENDPOINTS": str(self.endpoints),
                    "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2",
                    "CLINIC_SESSION_SECRET_FILE": str(folder / "session_secret"),
                    # the fair-share limits are off unless a test sets them (tests/test_fair_share_*.py)
                    "CLINIC_RATE_PER_ADDRESS": "0", "CLINIC_RATE_PER_CONVERSATION": "0", **(env or {})}
        self.env.pop("CLINIC_DB_URL", None)
        # The secret both servers share (contracts #5): Rasa sends it, the action server requires it.
        if not self.env.get("ACTION_SERVER_TOKEN"):
            self.env["ACTION_SERVER_TOKEN"] = secrets.token_hex(32)
        self.token = self.env["ACTION_SERVER_TOKEN"]
        self.processes: Dict[str, subprocess.Popen] = {}
        # What the session-wide pair of the tests is configured with (tests/conftest.py): the callback
        # channel's receiver and the web page's port (an allowed socket.io origin); None otherwise.
        self.receiver: Optional[Receiver] = None
        self.web_port: Optional[int] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rasa_port}"

    def start(self) -> "Servers":
        if not MODEL.exists():
            raise RuntimeError(f"{MODEL} is missing: run `make model` first")
        self._start_actions()
        self._start_rasa()
        self._wait(self.health["actions"], "actions")
        self._wait(self.health["rasa"], "rasa")
        return self

    @property
    def health(self) -> Dict[str, str]:
        """The URL each server answers on once it is ready."""
        return {"actions": f"http://127.0.0.1:{self.action_port}/health", "rasa": self.url + "/"}

    def action_command(self) -> List[str]:
        return [sys.executable, "-m", "actions", "--port", str(self.action_port)]

    def rasa_command(self, patched: bool = True) -> List[str]:
        """``python -m rasa_ext run`` as ``make run`` starts it (``patched=False``: Rasa as released)."""
        return [sys.executable, "-m", "rasa_ext" if patched else "rasa", "run", "--model", str(MODEL),
                "--endpoints", str(self.endpoints), "--credentials", str(self.credentials),
                "--interface", "127.0.0.1", "--port", str(self.rasa_port)]

    def _start_actions(self) -> None:
        self._start("actions", self.action_command())

    def _start_rasa(self) -> None:
        self._start("rasa", self.rasa_command())

    def _start(self, name: str, command: List[str]) -> None:
        log = open(self.folder / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def _wait(self, url: str, name: str, timeout: float = 600) -> None:
        # generous: a start took over 4 minutes on the shared 2-core machine at a load average of 20
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited:\n{self.log(name)[-3000:]}")
            try:
                if requests.get(url, timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{name} did not start within {timeout} s:\n{self.log(name)[-3000:]}")

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop(self, name: Optional[str] = None) -> None:
        for key in [name] if name else list(self.processes):
            process = self.processes.pop(key)
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    # Faults of the action server, with real signals (tests/test_never_silent.py).
    def signal_actions(self, signum: int) -> None:
        """Sends ``signum`` (SIGKILL, SIGSTOP, SIGCONT…) to the action server; waits for it after SIGKILL."""
        process = self.processes["actions"]
        process.send_signal(signum)
        if signum == signal.SIGKILL:
            process.wait()

    def start_actions(self) -> None:
        """Starts the action server again (after a kill) and waits until it answers."""
        self._start_actions()
        self._wait(f"http://127.0.0.1:{self.action_port}/health", "actions")

    def restart_rasa(self) -> None:
        self.stop("rasa")
        self._start_rasa()
        self._wait(self.url + "/", "rasa")


class Visitor:
    """A visitor talking to the REST channel with a long random id."""

    def __init__(self, servers: Servers) -> None:
        self.servers = servers
        self.sender = uuid.uuid4().hex

    def say(self, text: str) -> List[Dict[str, Any]]:
        response = requests.post(f"{self.servers.url}/webhooks/rest/webhook",
                                 json={"sender": self.sender, "message": text}, timeout=60)
        response.raise_for_status()
        return response.json()

    def says(self, text: str) -> str:
        """Everything the assistant answered to ``text``, as one string."""
        return "\n".join(message.get("text") or "" for message in self.say(text))


class Receiver:
    """A local HTTP server standing in for an integrator's callback endpoint (Rasa's callback channel
    posts the assistant's replies to it). Several tests may share one: each reads its own visitor's
    replies (``recipient``), and the others' stay queued for them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._received: List[Dict[str, Any]] = []
        received, arrived = self._received, self._arrived

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with arrived:
                    received.append({"path": self.path, "json": json.loads(body)})
                    arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/bot"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def messages(self, until: Callable[[List[Dict[str, Any]]], bool], timeout: float = 60,
                 recipient: Optional[str] = None) -> List[Dict[str, Any]]:
        """The posts received (only those to ``recipient`` if given), in order, taken off the receiver one
        by one until ``until`` holds for those taken; raises ``queue.Empty`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        got: List[Dict[str, Any]] = []
        with self._arrived:
            while not until(got):
                post = next((post for post in self._received
                             if recipient is None or post["json"].get("recipient_id") == recipient), None)
                if post is not None:
                    self._received.remove(post)
                    got.append(post)
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    raise queue.Empty(f"the receiver got {len(got)} posts, not what was awaited")
                self._arrived.wait(left)
        return got

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
