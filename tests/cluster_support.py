"""Runs ``scripts/cluster.py`` (what ``make cluster`` runs) for tests: free ports, the test's own
PostgreSQL database and Redis key prefix, real processes; and counts turns in PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import aiohttp
import psycopg2
import yaml
from psycopg2 import sql

from devtools.servers import MODEL, free_port

ROOT = Path(__file__).resolve().parent.parent
PG = {"host": os.environ.get("PGHOST", "127.0.0.1"), "port": int(os.environ.get("PGPORT", "5432")),
      "user": os.environ.get("PGUSER", "postgres")}


def create_database() -> str:
    """A new, empty PostgreSQL database for one test; drop it with :func:`drop_database`."""
    name = "cluster_test_" + uuid.uuid4().hex[:12]
    connection = psycopg2.connect(dbname="postgres", **PG)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    connection.close()
    return name


def drop_database(name: str) -> None:
    connection = psycopg2.connect(dbname="postgres", **PG)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    connection.close()


def endpoints_file(folder: Path, key_prefix: str, lock_store_type: Optional[str] = None) -> Path:
    """endpoints.postgres.yml with the test's Redis key prefix (and another lock store type if given)."""
    endpoints = yaml.safe_load((ROOT / "endpoints.postgres.yml").read_text())
    endpoints["lock_store"]["key_prefix"] = key_prefix
    if lock_store_type:
        endpoints["lock_store"]["type"] = lock_store_type
    path = folder / "endpoints.yml"
    path.write_text(yaml.safe_dump(endpoints, sort_keys=False))
    return path


def distinct_free_ports(names: List[str]) -> Dict[str, int]:
    """A free port per name, all different (free_port() alone can give the same port twice)."""
    ports: Dict[str, int] = {}
    while len(set(ports.values())) < len(names):
        ports = {name: free_port() for name in names}
    return ports


class Cluster:
    """``python scripts/cluster.py`` on free ports with the test's own database and Redis prefix."""

    def __init__(self, folder: Path, database: str, key_prefix: str,
                 lock_store_type: Optional[str] = None, env: Optional[Dict[str, str]] = None) -> None:
        self.folder = folder
        self.database = database
        self.ports = distinct_free_ports(["CLUSTER_PORT", "RASA_PORT_1", "RASA_PORT_2", "ACTION_SERVER_PORT_1",
                                          "ACTION_SERVER_PORT_2", "ACTIONS_PROXY_PORT", "CONSOLE_PORT", "WEB_PORT"])
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                    "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore",
                    "PGDATABASE": database, "CLUSTER_VAR": str(folder / "var"),
                    "RASA_ENDPOINTS": str(endpoints_file(folder, key_prefix, lock_store_type)),
                    "RASA_MODEL": str(MODEL), "CONSOLE_SECRET_KEY": uuid.uuid4().hex,
                    # every test visitor comes from 127.0.0.1, one "client" for the abuse limits
                    "CLINIC_MAX_REQUESTS_PER_CLIENT": "0",
                    "CLINIC_RATE_PER_ADDRESS": "0", "CLINIC_RATE_PER_CONVERSATION": "0",
                    **{name: str(port) for name, port in self.ports.items()}, **(env or {})}
        self.log_path = folder / "cluster.log"
        self.process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['CLUSTER_PORT']}"

    def rasa_url(self, number: int) -> str:
        return f"http://127.0.0.1:{self.ports[f'RASA_PORT_{number}']}"

    @property
    def access_log(self) -> Path:
        return self.folder / "var" / "nginx" / "access.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start(self, timeout: float = 400) -> "Cluster":
        if not MODEL.exists():
            raise RuntimeError(f"{MODEL} is missing: run `make model` first")
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "scripts/cluster.py"], cwd=ROOT, env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "The cluster is ready" in self.log():
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"the cluster exited ({self.process.returncode}):\n{self.log()[-4000:]}")
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"the cluster was not ready within {timeout} s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def pid_of(self, port_name: str) -> int:
        """The process of the cluster's server listening on ``port_name`` (found by its command line
        among the cluster's descendants)."""
        port = str(self.ports[port_name])
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                words = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0")]
            except OSError:
                continue
            if any(w == "--port" and words[i + 1:i + 2] == [port] for i, w in enumerate(words)) \
                    and self._descends(int(entry.name)):
                return int(entry.name)
        raise LookupError(f"no process of the cluster listens on {port_name}")

    def _descends(self, pid: int) -> bool:
        while pid > 1:
            if pid == self.process.pid:
                return True
            try:
                pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                return False
        return False


def events(database: str, sender: str) -> List[Dict[str, Any]]:
    """The stored events of one visitor (REST sender ``sender``), in order."""
    connection = psycopg2.connect(dbname=database, **PG)
    with connection.cursor() as cursor:
        cursor.execute("SELECT type_name, data FROM events WHERE sender_id = %s OR sender_id LIKE %s ORDER BY id",
                       (sender, "%:" + sender))
        rows = [{"type": type_name, **json.loads(data)} for type_name, data in cursor.fetchall()]
    connection.close()
    return rows


def requests_of(database: str, sender: str) -> List[Tuple[str, str, str, Optional[str], Optional[str]]]:
    connection = psycopg2.connect(dbname=database, **PG)
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, phone, callback_time, email, reason FROM consultation_requests "
                       "WHERE conversation_id = %s OR conversation_id LIKE %s", (sender, "%:" + sender))
        rows = cursor.fetchall()
    connection.close()
    return rows


def turn_counts(database: str, sender: str, texts: List[str]) -> Tuple[int, int]:
    """(turns lost, turns duplicated) of ``sender``: each text sent once must be stored as exactly one
    user event followed by the bot's actions."""
    stored = [e.get("text") for e in events(database, sender) if e["type"] == "user"]
    lost = sum(1 for text in texts if text not in stored)
    duplicated = sum(stored.count(text) - 1 for text in set(stored) if stored.count(text) > 1)
    return lost, duplicated


async def say(session: aiohttp.ClientSession, url: str, sender: str, text: str) -> List[Dict[str, Any]]:
    async with session.post(url + "/webhooks/rest/webhook", json={"sender": sender, "message": text}) as response:
        response.raise_for_status()
        return await response.json()


async def simultaneous_pairs(urls: Tuple[str, str], senders: List[str], pairs: int, copies: int = 1,
                             question: str = "what is fibromyalgia") -> Dict[str, List[str]]:
    """Every sender sends ``pairs`` rounds of messages, the messages of a round at the same moment:
    ``copies`` to each URL (a pair when 1); the senders run concurrently. Returns the texts sent, by
    sender (each text unique)."""
    sent: Dict[str, List[str]] = {sender: [] for sender in senders}

    async def one(session: aiohttp.ClientSession, sender: str) -> None:
        for n in range(pairs):
            batch = [(url, f"{question} {n}{chr(97 + i)}{c}") for c in range(copies) for i, url in enumerate(urls)]
            sent[sender] += [text for _, text in batch]
            await asyncio.gather(*(say(session, url, sender, text) for url, text in batch))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=180)) as session:
        await asyncio.gather(*(one(session, sender) for sender in senders))
    return sent


def new_senders(count: int) -> List[str]:
    return [uuid.uuid4().hex for _ in range(count)]


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@contextmanager
def running_cluster(tmp_path: Path, lock_store_type: Optional[str] = None,
                    env: Optional[Dict[str, str]] = None) -> Iterator[Cluster]:
    """A started cluster on its own database and Redis prefix, stopped and dropped afterwards."""
    database = create_database()
    cluster = Cluster(tmp_path, database, "t" + uuid.uuid4().hex[:12], lock_store_type, env)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        drop_database(database)
