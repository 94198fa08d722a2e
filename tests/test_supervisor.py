"""``make run``'s supervisor (scripts/supervisor.py, scripts/serve.py), with real processes and real signals.

The first tests drive :func:`supervisor.supervise` with tiny stand-in servers (``python -m http.server``
and a program that crashes at once), which makes restart limits fast to reach. The others start the real
``scripts/serve.py`` once, on free ports with its own database, endpoints and data folder, and then kill,
stop and block its four servers one after the other: each must come back while the chat keeps answering.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import pytest
import requests
import yaml

from devtools.servers import MODEL, ROOT, free_port
from scripts.supervisor import check_health

pytestmark = pytest.mark.e2e

# Fast timings for the tests: checks every second, hung after three failed 3 s checks, short backoff.
FAST = {"SUPERVISOR_CHECK_INTERVAL": "1", "SUPERVISOR_CHECK_TIMEOUT": "3", "SUPERVISOR_HUNG_AFTER": "3",
        "SUPERVISOR_BACKOFF_INITIAL": "0.5", "SUPERVISOR_MAX_RESTARTS": "5", "SUPERVISOR_STOP_TIMEOUT": "10"}
READY = "The assistant is ready"
QUESTION = "what is fibromyalgia?"


def wait_for(condition: Callable[[], object], timeout: float, what: str, log: Optional[Path] = None) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-4000:] if log else ""
    raise AssertionError(f"{what}: not within {timeout} s\n{tail}")


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def children(parent: int) -> Dict[int, str]:
    """The live child processes of ``parent``: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent and fields[0] != "Z":
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return found


# --- the supervisor with stand-in servers ----------------------------------------------------------

DRIVER = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
from supervisor import Server, supervise
servers = [Server(**spec) for spec in json.loads(sys.argv[2])]
sys.exit(supervise(servers, "STAND-INS READY", dict(os.environ)))
"""


def http_server(name: str, folder: Path, essential: bool = True, mark: str = "") -> dict:
    port = free_port()
    return {"name": name, "command": [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                      "--directory", str(folder)],
            "health_url": f"http://127.0.0.1:{port}/{mark}", "port": port, "essential": essential,
            "quiet": [re.escape(mark)] if mark else []}


def crasher(name: str, essential: bool) -> dict:
    port = free_port()
    return {"name": name, "command": [sys.executable, "-c", "import sys; print('crashing on purpose'); sys.exit(3)"],
            "health_url": f"http://127.0.0.1:{port}/", "port": port, "essential": essential}


def mute(name: str, essential: bool) -> dict:
    """A server that accepts connections and never answers, like one hung while starting."""
    port = free_port()
    code = (f"import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); "
            "print('listening, never answering', flush=True); time.sleep(600)")
    return {"name": name, "command": [sys.executable, "-c", code], "health_url": f"http://127.0.0.1:{port}/",
            "port": port, "essential": essential, "start_timeout": 1.5}


def start_driver(tmp_path: Path, specs: List[dict]) -> "tuple[subprocess.Popen, Path]":
    log = tmp_path / "driver.log"
    env = {**os.environ, "SUPERVISOR_CHECK_INTERVAL": "0.5", "SUPERVISOR_BACKOFF_INITIAL": "0.1",
           "SUPERVISOR_MAX_RESTARTS": "3", "SUPERVISOR_RESTART_WINDOW": "60"}
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-c", DRIVER, str(ROOT / "scripts"), json.dumps(specs)],
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    return process, log


def started_pids(log: Path, name: str) -> List[int]:
    return [int(pid) for pid in re.findall(rf"supervisor \| {name} started \(pid (\d+)\)", log.read_text())]


def test_an_essential_server_that_cannot_be_kept_up_stops_everything(tmp_path: Path) -> None:
    specs = [http_server("healthy", tmp_path), crasher("crasher", essential=True)]
    process, log = start_driver(tmp_path, specs)
    try:
        status = process.wait(timeout=60)
    finally:
        process.kill()
    text = log.read_text()
    assert status == 1, text
    assert "crasher could not be kept up: it failed 4 times within 60 s" in text, text
    assert "stopping everything" in text
    assert "STAND-INS READY" not in text
    assert re.search(r"^crasher +\| crashing on purpose$", text, re.M)  # its output, with its name in front
    # exponential backoff between the three restarts allowed
    assert re.findall(r"restarting crasher in ([\d.]+) s", text) == ["0.1", "0.2", "0.4"], text
    healthy = started_pids(log, "healthy")
    assert len(healthy) == 1 and not alive(healthy[0]), text  # the healthy one was stopped too


def test_a_non_essential_server_that_cannot_be_kept_up_is_left_down_and_the_rest_keeps_running(
        tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("ok")
    (tmp_path / "visible.txt").write_text("x")
    healthy = http_server("healthy", tmp_path, mark="index.html?health-check")
    process, log = start_driver(tmp_path, [healthy, crasher("crasher", essential=False)])
    try:
        wait_for(lambda: "(Without crasher" in log.read_text(), 60, "ready without the crasher", log)
        text = log.read_text()
        assert "crasher could not be kept up" in text and "It is left down; the other servers keep running" in text
        assert text.index("STAND-INS READY") > text.index("It is left down")  # ready once the rest answers
        assert process.poll() is None
        assert check_health(healthy["health_url"], 5)
        requests.get(healthy["health_url"].rsplit("/", 1)[0] + "/visible.txt", timeout=5)
        wait_for(lambda: "GET /visible.txt" in log.read_text(), 10, "the server's own log line", log)
        assert "health-check" not in log.read_text().split("STAND-INS READY")[1]  # hidden: Server.quiet
        pid = started_pids(log, "healthy")[0]
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
    assert "all servers stopped" in log.read_text()
    assert not alive(pid)


def test_a_server_that_never_answers_after_starting_is_killed_and_restarted(tmp_path: Path) -> None:
    process, log = start_driver(tmp_path, [http_server("healthy", tmp_path), mute("mute", essential=False)])
    try:
        wait_for(lambda: "mute could not be kept up" in log.read_text(), 60, "the mute server given up", log)
        text = log.read_text()
        assert "mute did not answer http://" in text and "within 1.5 s of starting" in text
        mutes = started_pids(log, "mute")
        assert len(mutes) == 4 and not any(alive(pid) for pid in mutes), text  # each one killed
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_no_process_outlives_a_killed_supervisor_not_even_a_server_s_own_child(tmp_path: Path) -> None:
    port = free_port()
    code = ("import subprocess, sys; "
            f"subprocess.run([sys.executable, '-m', 'http.server', '{port}', '--bind', '127.0.0.1'])")
    spec = {"name": "parent", "command": [sys.executable, "-c", code], "health_url": f"http://127.0.0.1:{port}/",
            "port": port}
    process, log = start_driver(tmp_path, [spec])
    pids: List[int] = []
    try:
        wait_for(lambda: "STAND-INS READY" in log.read_text(), 30, "ready", log)
        leader = started_pids(log, "parent")[0]
        pids = [leader, *children(leader)]
        assert len(pids) == 2  # the server and the process it started
        process.kill()
        process.wait()
        wait_for(lambda: not any(alive(pid) for pid in pids), 10, f"{pids} gone after kill -9 of the supervisor")
    finally:
        process.kill()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


# --- the real make run ------------------------------------------------------------------------------


def test_a_taken_port_stops_make_run_before_anything_starts(tmp_path: Path) -> None:
    env = run_env(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(env["CONSOLE_PORT"])))
        squatter.listen()
        result = subprocess.run([sys.executable, "scripts/serve.py"], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert f"Port {env['CONSOLE_PORT']} on 127.0.0.1 (needed by console) is already in use" in output, output
    assert "CONSOLE_PORT=<port>" in output and "Nothing was started." in output
    assert "started (pid" not in output
    assert READY not in output


def run_env(folder: Path) -> Dict[str, str]:
    """``make run``'s environment for a copy of the assistant in ``folder``: free ports, its own files."""
    var = folder / "var"
    var.mkdir(mode=0o755)
    var.chmod(0o755)  # as an older run with umask 022 left it
    db = var / "conversations.db"
    db.touch()
    db.chmod(0o644)
    ports = {name: str(free_port()) for name in ("RASA_PORT", "ACTION_SERVER_PORT", "CONSOLE_PORT", "WEB_PORT")}
    endpoints = yaml.safe_load((ROOT / "endpoints.yml").read_text())  # keeps ${VARIABLE} placeholders as they are
    endpoints["action_endpoint"]["url"] = f"http://127.0.0.1:{ports['ACTION_SERVER_PORT']}/webhook"
    endpoints["tracker_store"]["db"] = str(db)
    (folder / "endpoints.yml").write_text(yaml.safe_dump(endpoints))
    env = {**os.environ, **ports, **FAST, "PYTHONPATH": str(ROOT), "RASA_TELEMETRY_ENABLED": "false",
           "TF_CPP_MIN_LOG_LEVEL": "2", "CLINIC_VAR_DIR": str(var), "RASA_ENDPOINTS": str(folder / "endpoints.yml"),
           "CLINIC_ENDPOINTS": str(folder / "endpoints.yml"), "CLINIC_DB_URL": f"sqlite:///{db}",
           "RASA_CREDENTIALS": str(folder / "credentials.yml"), "CONSOLE_SECRET_KEY_FILE": str(var / "console_key"),
           "WEB_ORIGINS": f"http://127.0.0.1:{ports['WEB_PORT']}"}
    for name in ("ACTION_SERVER_TOKEN", "CONSOLE_SECRET_KEY", "RASA_HOST", "ACTION_SERVER_HOST", "CONSOLE_HOST",
                 "WEB_HOST", "RASA_URL"):
        env.pop(name, None)
    subprocess.run([sys.executable, "scripts/credentials.py", "--out", env["RASA_CREDENTIALS"]], cwd=ROOT, env=env,
                   check=True, capture_output=True)
    return env


class Run:
    """A running ``scripts/serve.py`` and what the tests need to poke at it."""

    def __init__(self, folder: Path, extra_env: Optional[Dict[str, str]] = None) -> None:
        self.folder = folder
        self.env = {**run_env(folder), **(extra_env or {})}
        self.log = folder / "serve.log"
        if (ROOT / "scripts" / "migrate.py").exists():  # the Makefile runs the migration before serve.py
            subprocess.run([sys.executable, "-m", "scripts.migrate"], cwd=ROOT, env=self.env, check=True,
                           capture_output=True)
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen([sys.executable, "scripts/serve.py"], cwd=ROOT, env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT)
        self.health = {
            "actions": f"http://127.0.0.1:{self.env['ACTION_SERVER_PORT']}/health",
            "rasa": f"http://127.0.0.1:{self.env['RASA_PORT']}/",
            "console": f"http://127.0.0.1:{self.env['CONSOLE_PORT']}/static/console.css",
            "web": f"http://127.0.0.1:{self.env['WEB_PORT']}/widget.css",
        }

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self) -> Dict[str, int]:
        """The supervisor's live children, by server name."""
        marks = {"actions": "-m actions", "rasa": "-m rasa_ext run", "console": "-m console", "web": "-m web.server"}
        found = {}
        for pid, command in children(self.process.pid).items():
            for name, mark in marks.items():
                if mark in command:
                    found[name] = pid
        return found

    def seen_up(self, name: str) -> bool:
        """Whether the supervisor saw the last start of ``name`` answer (until then it counts as starting,
        and a failed check is not yet a hang)."""
        text = self.text()
        return text.count(f"supervisor | {name} answers ") == text.count(f"supervisor | {name} started (pid")

    def all_up(self) -> bool:
        return (set(self.pids()) == set(self.health) and all(check_health(url, 5) for url in self.health.values())
                and all(self.seen_up(name) for name in self.health))

    def ask(self, text: str = QUESTION) -> str:
        response = requests.post(f"http://127.0.0.1:{self.env['RASA_PORT']}/webhooks/rest/webhook",
                                 json={"sender": os.urandom(16).hex(), "message": text}, timeout=60)
        response.raise_for_status()
        return "\n".join(message.get("text") or "" for message in response.json())

    def restarted(self, name: str, old_pid: int, timeout: float) -> int:
        """Waits until ``name`` runs as another process and answers its health check; its new pid."""
        def back() -> Optional[int]:
            pid = self.pids().get(name)
            return pid if pid and pid != old_pid and check_health(self.health[name], 5) and self.seen_up(name) else None
        pid = wait_for(back, timeout, f"{name} restarted and answering", self.log)
        assert not alive(old_pid)
        return pid  # type: ignore[return-value]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    with running(tmp_path_factory.mktemp("make-run")) as started:
        yield started


@contextlib.contextmanager
def running(folder: Path, extra_env: Optional[Dict[str, str]] = None) -> Iterator[Run]:
    """``scripts/serve.py`` started in ``folder`` and ready; every server stopped afterwards."""
    if not MODEL.exists():
        pytest.skip(f"{MODEL} is missing: run `make model` first")
    started = Run(folder, extra_env)
    try:
        wait_for(lambda: READY in started.text() or started.process.poll() is not None, 300, "ready", started.log)
        assert started.process.poll() is None, started.text()[-4000:]
        # "ready" means every server answers: checked the moment it is printed
        assert all(check_health(url, 5) for url in started.health.values()), started.text()[-4000:]
        yield started
    finally:
        pids = started.pids()
        started.process.send_signal(signal.SIGTERM)
        try:
            started.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            started.process.kill()
        for pid in pids.values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_servers_write_private_files_and_share_a_generated_action_token(run: Run) -> None:
    assert "fibromyalgia" in run.ask().lower()  # something was written to the database
    var = Path(run.env["CLINIC_VAR_DIR"])
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    for path in var.iterdir():
        assert stat.S_IMODE(path.lstat().st_mode) & 0o077 == 0, path
    tokens = set()
    for name, pid in run.pids().items():
        status = Path(f"/proc/{pid}/status").read_text()
        assert re.search(r"^Umask:\s+0077$", status, re.M), (name, status)
        environ = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0")
                       if "=" in item)
        tokens.add(environ.get("ACTION_SERVER_TOKEN"))
    assert len(tokens) == 1 and re.fullmatch(r"[0-9a-f]{64}", tokens.pop() or "")


@pytest.mark.parametrize("name", ["console", "web"])
def test_a_killed_console_or_web_server_is_restarted_and_the_chat_keeps_answering(run: Run, name: str) -> None:
    wait_for(run.all_up, 120, "all servers up", run.log)
    before = run.pids()
    old = before[name]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: f"{name} was killed by signal 9" in run.text(), 10, "the crash noticed", run.log)
    assert "fibromyalgia" in run.ask().lower()  # the chat answers all the same...
    chat = {key: before[key] for key in ("rasa", "actions")}
    assert {key: run.pids().get(key) for key in chat} == chat  # ...from the same, untouched processes
    run.restarted(name, old, 90)
    assert "fibromyalgia" in run.ask().lower()


def test_a_killed_action_server_is_restarted(run: Run) -> None:
    wait_for(run.all_up, 120, "all servers up", run.log)
    old = run.pids()["actions"]
    os.kill(old, signal.SIGKILL)
    run.restarted("actions", old, 90)
    assert "actions was killed by signal 9" in run.text()
    assert "fibromyalgia" in run.ask().lower()


def test_a_stopped_action_server_is_found_hung_killed_and_restarted(run: Run) -> None:
    wait_for(run.all_up, 120, "all servers up", run.log)
    old = run.pids()["actions"]
    os.kill(old, signal.SIGSTOP)
    try:
        run.restarted("actions", old, 120)
    finally:
        if alive(old):
            os.kill(old, signal.SIGKILL)
    assert "actions failed its health check 3 times in a row" in run.text()
    assert "fibromyalgia" in run.ask().lower()


def test_a_killed_rasa_server_is_restarted(run: Run) -> None:
    wait_for(run.all_up, 120, "all servers up", run.log)
    old = run.pids()["rasa"]
    os.kill(old, signal.SIGKILL)
    run.restarted("rasa", old, 300)
    assert "fibromyalgia" in run.ask().lower()


def test_a_second_make_run_next_to_a_running_one_fails_fast(run: Run) -> None:
    result = subprocess.run([sys.executable, "scripts/serve.py"], cwd=ROOT, env=run.env, capture_output=True,
                            text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "is already in use" in output and READY not in output, output
    assert set(run.pids()) == set(run.health)  # the running one is untouched


def test_no_server_outlives_a_killed_supervisor(run: Run) -> None:
    wait_for(run.all_up, 120, "all servers up", run.log)
    pids = run.pids()
    assert len(pids) == 4
    run.process.kill()
    run.process.wait()
    try:
        wait_for(lambda: not any(alive(pid) for pid in pids.values()), 10,
                 f"every child gone after kill -9 of the supervisor ({pids})")
    finally:
        for pid in pids.values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


# --- busy is not hung ------------------------------------------------------------------------------------

SLOW = """
import http.server, sys, time
port, mode, answered = int(sys.argv[1]), sys.argv[2], [0]

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        answered[0] += 1
        if answered[0] > 2 and mode == "busy":  # working hard: every answer takes 3 s of CPU
            end = time.process_time() + 3
            while time.process_time() < end:
                pass
        elif answered[0] > 2:  # frozen: no progress at all
            time.sleep(600)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def slow_server(name: str, mode: str) -> dict:
    port = free_port()
    return {"name": name, "command": [sys.executable, "-c", SLOW, str(port), mode],
            "health_url": f"http://127.0.0.1:{port}/", "port": port, "essential": False}


def test_a_busy_server_that_answers_slowly_is_not_restarted_a_frozen_one_is(tmp_path: Path) -> None:
    log = tmp_path / "driver.log"
    env = {**os.environ, "SUPERVISOR_CHECK_INTERVAL": "0.5", "SUPERVISOR_CHECK_TIMEOUT": "1",
           "SUPERVISOR_BACKOFF_INITIAL": "0.1", "SUPERVISOR_BUSY_TIMEOUT": "60"}
    specs = [slow_server("busy", "busy"), slow_server("frozen", "frozen")]
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-c", DRIVER, str(ROOT / "scripts"), json.dumps(specs)],
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: len(started_pids(log, "frozen")) >= 2, 60, "the frozen server restarted", log)
        time.sleep(15)  # several 1-s check timeouts of the busy one
        text = log.read_text()
        assert len(started_pids(log, "busy")) == 1, text  # busy: never killed
        assert "busy is busy" in text, text
        assert "frozen failed its health check" in text, text
    finally:
        process.terminate()
        process.wait(timeout=30)
