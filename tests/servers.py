"""Starts the real action server and Rasa server for end-to-end tests, on free local ports, with a
fresh SQLite database for conversations and consultation requests (or a given PostgreSQL database)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

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

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rasa_port}"

    def start(self) -> "Servers":
        if not MODEL.exists():
            raise RuntimeError(f"{MODEL} is missing: run `make model` first")
        self._start_actions()
        self._start_rasa()
        self._wait(f"http://127.0.0.1:{self.action_port}/health", "actions")
        self._wait(self.url + "/", "rasa")
        return self

    def _start_actions(self) -> None:
        self._start("actions", [sys.executable, "-m", "actions", "--port", str(self.action_port)])

    def _start_rasa(self) -> None:
        self._start("rasa", [sys.executable, "-m", "rasa_ext", "run", "--model", str(MODEL),
                             "--endpoints", str(self.endpoints), "--credentials", str(self.credentials),
                             "--interface", "127.0.0.1", "--port", str(self.rasa_port)])

    def _start(self, name: str, command: List[str]) -> None:
        log = open(self.folder / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def _wait(self, url: str, name: str, timeout: float = 240) -> None:
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
