"""Keeps a set of local servers running: ``make run`` (scripts/serve.py) and ``make cluster`` use it.

    from scripts.supervisor import Server, supervise
    servers = [Server("api", [sys.executable, "-m", "api", "--port", "9000"],
                      health_url="http://127.0.0.1:9000/health", port=9000),
               Server("docs", [...], health_url="http://127.0.0.1:9001/", port=9001, essential=False)]
    sys.exit(supervise(servers, "Ready: http://127.0.0.1:9000", env=dict(os.environ)))

What :func:`supervise` guarantees, in order:

1. **Ports first.** Every server's port is tried (bound and released) before anything starts; a taken
   port stops everything with a message naming the port, the server and what to do (exit status 2).
   So a second ``make run`` next to a running one fails at once instead of saying "ready".
2. **Ready means ready.** ``ready_message`` is printed once every server answers its health check
   (``GET health_url`` answers 2xx or 3xx within the check timeout; redirects are not followed).
3. **Crashed or hung servers are restarted, busy ones are not.** A server that exits, or whose health
   check fails ``hung_after`` times in a row while its processes make no progress (no CPU time used: a
   deadlock, a wait that never ends, SIGSTOP), is killed (its whole process group, SIGKILL) and started
   again after an exponential backoff (``backoff_initial`` doubled per restart in the window, at most
   ``backoff_max``). A server that misses a check while it *works* (its process group used CPU time
   during the check) is busy, not hung: it is said once, and its next check waits up to
   ``busy_timeout`` for the answer; only a server that does not answer even then is killed. So a load,
   or an attack, is never turned into restarts. A server that does not answer within ``start_timeout``
   of being started counts as failed the same way.
4. **A restart limit.** More than ``max_restarts`` restarts of one server within ``restart_window``
   seconds means it cannot be kept up: if it is ``essential`` (the chat depends on it) everything is
   stopped with a message and exit status 1; otherwise it is left down with a message and the others
   keep running (a staff console crash never takes the chat down).
5. **No orphans.** Each child runs in its own process group (so a Ctrl-C in the terminal reaches only
   the supervisor, which stops the children in order: SIGTERM, then SIGKILL after ``stop_timeout``) and
   asks Linux to SIGKILL it when the supervisor dies (``prctl(PR_SET_PDEATHSIG)``, set in the child
   before ``exec``), so even ``kill -9`` of the supervisor leaves no server running. PR_SET_PDEATHSIG
   fires when the *thread* that forked the child ends, so children are only ever started from the
   thread that called :func:`supervise` (health checks run in worker threads, starts never do).
   It reaches only the child itself, not the processes the child started (nginx's workers, say): a
   small reaper process, told each child's process group through a pipe, SIGKILLs those groups when the
   pipe closes without a goodbye, i.e. when the supervisor died.
6. **Private files.** Every child starts with ``umask`` (default 077): whatever the servers write is
   readable by its owner only.

Each child's output stays on the terminal, every line prefixed with the server's name (stdout to
stdout, stderr to stderr); the supervisor adds only its own status lines, prefixed ``supervisor |``,
never anything a server received. The child environment is ``env`` + ``Server.env`` +
``PYTHONUNBUFFERED=1`` (so lines appear when they are written).

The timings come from :class:`Policy`; :meth:`Policy.from_env` reads them from ``SUPERVISOR_*``
variables (e.g. ``SUPERVISOR_CHECK_INTERVAL=1``), which the tests use to detect a hang quickly.
SIGINT, SIGTERM and SIGHUP stop everything and return 0.
"""

from __future__ import annotations

import collections
import concurrent.futures
import ctypes
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, fields
from typing import IO, Callable, Deque, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

EXIT_STOPPED = 0  # stopped by a signal (Ctrl-C)
EXIT_ESSENTIAL_DOWN = 1  # an essential server could not be kept up
EXIT_NOT_STARTED = 2  # a port was taken or a server was misdeclared: nothing was started


@dataclass
class Server:
    """One server to keep running. The first six fields are the contract used by ``make cluster``."""

    name: str
    command: List[str]
    health_url: str  # GET must answer 2xx/3xx within the check timeout
    port: int  # checked free before anything starts
    essential: bool = True  # the chat depends on it; a non-essential crash never stops the others
    env: Dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"  # the address the server binds, for the port check
    port_setting: str = ""  # the environment variable that chooses the port, named when it is taken
    start_timeout: float = 300.0  # seconds from start to the first healthy answer
    quiet: Tuple[str, ...] = ()  # regular expressions: output lines matching one are not shown
    #                              (e.g. the server's own access-log line for each health check)
    cwd: Optional[str] = None


@dataclass
class Policy:
    """How often servers are checked, when they count as hung, how restarts back off and are limited."""

    check_interval: float = 5.0  # seconds between health checks of a running server
    check_timeout: float = 5.0  # a check not answered within this is a failed check
    hung_after: int = 3  # this many failed checks in a row: the server is killed and restarted
    busy_timeout: float = 120.0  # a server that works (uses CPU) but answers late gets this long to answer
    backoff_initial: float = 1.0  # delay before the first restart; doubled for each further one
    backoff_max: float = 30.0
    max_restarts: int = 5  # restarts allowed within restart_window; one more means give up
    restart_window: float = 300.0
    stop_timeout: float = 10.0  # SIGTERM, then SIGKILL after this many seconds
    umask: Optional[int] = 0o077  # every child's umask (None: inherit the supervisor's)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Policy":
        """A policy with each field overridden by ``SUPERVISOR_<FIELD>`` when set (umask in octal)."""
        values = {}
        for item in fields(cls):
            raw = env.get("SUPERVISOR_" + item.name.upper())
            if not raw:
                continue
            try:
                if item.name == "umask":
                    values[item.name] = int(raw, 8)
                elif item.name in ("hung_after", "max_restarts"):
                    values[item.name] = int(raw)
                else:
                    values[item.name] = float(raw)
            except ValueError:
                raise SystemExit(f"SUPERVISOR_{item.name.upper()} must be a number, not {raw!r}") from None
        return cls(**values)


# --- child processes ------------------------------------------------------------------------------

PR_SET_PDEATHSIG = 1
try:  # loaded once, before any fork: the child only calls it
    _prctl: Optional[Callable[..., int]] = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: no parent-death signal (process groups still apply)
    _prctl = None


def _child_setup(supervisor_pid: int, umask: Optional[int]) -> Callable[[], None]:
    """Runs in the child between fork and exec: die with the supervisor, private files."""

    def setup() -> None:
        if umask is not None:
            os.umask(umask)
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != supervisor_pid:  # the supervisor died before prctl took effect
                os._exit(1)

    return setup


# Reads process group ids from stdin ("123" add, "-123" forget); at end of input without "done" (the
# supervisor died), SIGKILLs every group still listed. Its own session: a Ctrl-C does not reach it.
REAPER = r"""
import os, signal, sys
for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
    signal.signal(signum, signal.SIG_IGN)
groups = set()
for line in sys.stdin:
    word = line.strip()
    if word == "done":
        sys.exit(0)
    if word.startswith("-"):
        groups.discard(int(word[1:]))
    elif word:
        groups.add(int(word))
for group in groups:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
"""


class _Reaper:
    """The process that kills the children's process groups if the supervisor dies (see REAPER)."""

    def __init__(self) -> None:
        self.process: Optional[subprocess.Popen] = None
        try:
            self.process = subprocess.Popen([sys.executable, "-c", REAPER], stdin=subprocess.PIPE,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            start_new_session=True, text=True)
        except OSError:  # without it, PR_SET_PDEATHSIG still kills the children themselves
            pass

    def tell(self, word: str) -> None:
        if self.process is None or self.process.stdin is None:
            return
        try:
            self.process.stdin.write(word + "\n")
            self.process.stdin.flush()
        except (OSError, ValueError):
            self.process = None

    def close(self) -> None:
        """A goodbye: every group is gone, nothing to kill."""
        self.tell("done")
        if self.process is not None:
            try:
                self.process.stdin.close()  # type: ignore[union-attr]
                self.process.wait(timeout=5)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # the child leads its own group (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


def group_cpu_seconds(group: int) -> float:
    """The CPU time (user + system) used so far by the live processes of process group ``group``."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 12 and int(fields[2]) == group:  # fields: state, ppid, pgrp, …, utime (11), stime (12)
            total += int(fields[11]) + int(fields[12])
    return total / ticks


# CPU seconds a server must use during a missed check to count as busy rather than hung.
BUSY_CPU = 0.05


def check_health(url: str, timeout: float) -> bool:
    """Whether ``GET url`` answers 2xx or 3xx within ``timeout`` seconds (redirects not followed)."""
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        connection.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        response = connection.getresponse()
        response.read(65536)
        return 200 <= response.status < 400
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def port_problem(server: Server) -> Optional[str]:
    """Why ``server`` could not listen on its port now, or None when the port is free."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(server.host, server.port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        return f"{server.name}: cannot resolve its address {server.host!r} ({error})."
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is fine
        try:
            probe.bind(address)
        except OSError as error:
            hint = f", or choose another port with {server.port_setting}=<port>" if server.port_setting else ""
            return (f"Port {server.port} on {server.host} (needed by {server.name}) is already in use "
                    f"({error.strerror}). Another `make run` or `make cluster` may be running: stop it "
                    f"(Ctrl-C in its terminal), or find what holds the port with "
                    f"`ss -ltnp 'sport = :{server.port}'`{hint}.")
    return None


# --- one supervised server ------------------------------------------------------------------------

STARTING, UP, WAITING, DOWN = "starting", "up", "waiting to restart", "down"


class _Supervised:
    """A server's process and state; changed only by the supervisor's main thread."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.process: Optional[subprocess.Popen] = None
        self.state = WAITING
        self.generation = 0  # which process a health check result belongs to
        self.started_at = 0.0
        self.restart_at = 0.0
        self.next_check_at = 0.0
        self.failed_checks = 0
        self.check: Optional[concurrent.futures.Future] = None
        self.check_generation = 0
        self.check_cpu = 0.0  # the process group's CPU seconds when the check was sent
        self.busy = False  # missed a check while working: the next check waits up to busy_timeout
        self.restarts: Deque[float] = collections.deque()
        self.was_up = False


class _Supervisor:
    def __init__(self, servers: List[Server], ready_message: str, env: Mapping[str, str], policy: Policy,
                 out: IO[str], err: IO[str]) -> None:
        self.servers = [_Supervised(server) for server in servers]
        self.ready_message = ready_message
        self.env = dict(env)
        self.policy = policy
        self.out, self.err = out, err
        self.write_lock = threading.Lock()
        self.stop_requested = False
        self.ready = False
        self.reaper: Optional[_Reaper] = None
        self.checks = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(servers)),
                                                           thread_name_prefix="health")

    # output

    def _write(self, stream: IO[str], text: str) -> None:
        with self.write_lock:
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):  # the terminal or pipe is gone: keep supervising regardless
                pass

    def say(self, text: str, error: bool = False) -> None:
        self._write(self.err if error else self.out,
                    "".join(f"supervisor | {line}\n" for line in text.splitlines()))

    def _relay(self, name: str, pipe: IO[bytes], stream: IO[str], quiet: Tuple[str, ...]) -> None:
        """Copies a child's output to ours, line by line, with the server's name in front."""
        width = max(len("supervisor"), *(len(item.server.name) for item in self.servers))
        hidden = [re.compile(pattern) for pattern in quiet]
        with pipe:
            for raw in iter(pipe.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not any(pattern.search(line) for pattern in hidden):
                    self._write(stream, f"{name:<{width}} | {line}\n")

    # processes

    def start(self, item: _Supervised) -> None:
        server = item.server
        env = {**self.env, **server.env, "PYTHONUNBUFFERED": "1"}
        try:
            process = subprocess.Popen(
                server.command, cwd=server.cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True,
                preexec_fn=_child_setup(os.getpid(), self.policy.umask))
        except OSError as error:
            self.say(f"{server.name} could not be started: {error}", error=True)
            self.failed(item, now=time.monotonic())
            return
        for pipe, stream in ((process.stdout, self.out), (process.stderr, self.err)):
            threading.Thread(target=self._relay, args=(server.name, pipe, stream, server.quiet),
                             name=f"relay-{server.name}", daemon=True).start()
        item.process = process
        if self.reaper is not None:
            self.reaper.tell(str(process.pid))
        item.generation += 1
        item.state = STARTING
        item.started_at = time.monotonic()
        item.next_check_at = item.started_at
        item.failed_checks = 0
        item.busy = False
        self.say(f"{server.name} started (pid {process.pid})")

    def kill(self, item: _Supervised) -> None:
        """SIGKILL to the server's whole process group, then reap it."""
        if item.process is None:
            return
        _signal_group(item.process, signal.SIGKILL)
        try:
            item.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._forget(item.process)
        item.process = None

    def _forget(self, process: subprocess.Popen) -> None:
        if self.reaper is not None:
            self.reaper.tell(f"-{process.pid}")

    def failed(self, item: _Supervised, now: float) -> None:
        """The server crashed, hung or never came up: restart it after a backoff, or give up."""
        self.kill(item)
        window = self.policy.restart_window
        while item.restarts and now - item.restarts[0] > window:
            item.restarts.popleft()
        name = item.server.name
        if len(item.restarts) >= self.policy.max_restarts:
            item.state = DOWN
            what = (f"{name} could not be kept up: it failed {len(item.restarts) + 1} times within "
                    f"{window:g} s (see its output above, lines starting with '{name} |').")
            if item.server.essential:
                self.say(f"{what}\nThe others depend on it: stopping everything.", error=True)
                self.stop_requested = True
            else:
                self.say(f"{what}\nIt is left down; the other servers keep running. Fix it, then "
                         f"restart.", error=True)
            return
        item.restarts.append(now)
        delay = min(self.policy.backoff_max, self.policy.backoff_initial * 2 ** (len(item.restarts) - 1))
        item.state = WAITING
        item.restart_at = now + delay
        self.say(f"restarting {name} in {delay:g} s (restart {len(item.restarts)} of at most "
                 f"{self.policy.max_restarts} within {window:g} s)")

    # the loop

    def step(self, now: float) -> None:
        for item in self.servers:
            server = item.server
            if item.state == WAITING:
                if now >= item.restart_at:
                    self.start(item)
                continue
            if item.state not in (STARTING, UP) or item.process is None:
                continue
            status = item.process.poll()
            if status is not None:
                how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
                self.say(f"{server.name} {how}", error=True)
                self.failed(item, now)
                continue
            if item.check is not None and item.check.done():
                healthy = item.check.result() and item.check_generation == item.generation
                item.check = None
                self._checked(item, healthy, now)
                if item.state not in (STARTING, UP):
                    continue
            if item.state == STARTING and now - item.started_at > server.start_timeout:
                self.say(f"{server.name} did not answer {server.health_url} within {server.start_timeout:g} s "
                         f"of starting", error=True)
                self.failed(item, now)
                continue
            if item.check is None and now >= item.next_check_at:
                timeout = self.policy.busy_timeout if item.busy else self.policy.check_timeout
                item.check_cpu = self._cpu(item)
                item.check = self.checks.submit(check_health, server.health_url, timeout)
                item.check_generation = item.generation
                interval = self.policy.check_interval if item.state == UP else min(1.0, self.policy.check_interval)
                item.next_check_at = now + interval

    def _checked(self, item: _Supervised, healthy: bool, now: float) -> None:
        server = item.server
        if healthy:
            item.failed_checks = 0
            if item.busy:
                self.say(f"{server.name} answers again: it was busy, not hung")
                item.busy = False
            if item.state == STARTING:
                item.state = UP
                self.say(f"{server.name} answers {server.health_url}" + (" again" if item.was_up else ""))
                item.was_up = True
            return
        if item.state != UP:
            return  # still starting: start_timeout decides
        if not item.busy and self._cpu(item) - item.check_cpu >= BUSY_CPU:
            item.busy = True
            self.say(f"{server.name} is busy: no answer to {server.health_url} within "
                     f"{self.policy.check_timeout:g} s, but it is working; waiting up to "
                     f"{self.policy.busy_timeout:g} s for its answer, not restarting it")
            return
        if item.busy:  # not even the long check was answered: hung, whatever it was doing
            item.busy = False
            item.failed_checks = self.policy.hung_after - 1
        item.failed_checks += 1
        if item.failed_checks >= self.policy.hung_after:
            self.say(f"{server.name} failed its health check {item.failed_checks} times in a row "
                     f"({server.health_url}, {self.policy.check_timeout:g} s timeout): it is hung, killing it",
                     error=True)
            self.failed(item, now)

    @staticmethod
    def _cpu(item: _Supervised) -> float:
        return group_cpu_seconds(item.process.pid) if item.process is not None else 0.0

    def announce_ready(self) -> None:
        alive = [item for item in self.servers if item.state != DOWN]
        if self.ready or self.stop_requested or not alive or any(item.state != UP for item in alive) or any(
                item.state == DOWN and item.server.essential for item in self.servers):
            return
        self.ready = True
        down = [item.server.name for item in self.servers if item.state == DOWN]
        note = f"\n(Without {', '.join(down)}: it could not be kept up, see above.)" if down else ""
        self._write(self.out, f"\n{self.ready_message}{note}\n\n")

    def stop_all(self) -> None:
        running = [item.process for item in self.servers if item.process is not None]
        for process in running:
            _signal_group(process, signal.SIGCONT)  # a stopped (hung) process cannot act on SIGTERM
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + self.policy.stop_timeout
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process, signal.SIGKILL)  # whatever is left of the group
            process.wait()
            self._forget(process)
        for item in self.servers:
            item.process = None
        if self.reaper is not None:
            self.reaper.close()
        self.checks.shutdown(wait=False, cancel_futures=True)
        self.say("all servers stopped")

    def run(self) -> int:
        names = [item.server.name for item in self.servers]
        if len(set(names)) != len(names):
            self.say(f"server names must be unique: {names}", error=True)
            return EXIT_NOT_STARTED
        ports = [item.server.port for item in self.servers]
        problems = [f"{item.server.name} and another server both use port {item.server.port}."
                    for index, item in enumerate(self.servers) if item.server.port in ports[:index]]
        problems += [problem for problem in map(port_problem, (item.server for item in self.servers)) if problem]
        if problems:
            self.say("\n".join(problems) + "\nNothing was started.", error=True)
            return EXIT_NOT_STARTED

        def on_signal(signum: int, frame: object) -> None:
            self.stop_requested = True

        stopping = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {signum: signal.signal(signum, on_signal) for signum in stopping}
        essential_down = False
        self.reaper = _Reaper()
        try:
            for item in self.servers:
                self.start(item)
            while not self.stop_requested:
                self.step(time.monotonic())
                self.announce_ready()
                if all(item.state == DOWN for item in self.servers):
                    self.say("no server is left running.", error=True)
                    break
                time.sleep(0.1)
            essential_down = any(item.state == DOWN and item.server.essential for item in self.servers) or all(
                item.state == DOWN for item in self.servers)
        finally:
            self.stop_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return EXIT_ESSENTIAL_DOWN if essential_down else EXIT_STOPPED


def supervise(servers: List[Server], ready_message: str, env: Dict[str, str],
              policy: Optional[Policy] = None, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr) -> int:
    """Runs ``servers`` until SIGINT/SIGTERM/SIGHUP (exit 0) or an essential server cannot be kept up
    (exit 1); exit 2 when a port is taken and nothing was started. See the module docstring.

    Must be called from the main thread (it installs signal handlers, and children die with the
    thread that started them). ``policy`` defaults to :meth:`Policy.from_env` of ``env``.
    """
    return _Supervisor(servers, ready_message, env, policy or Policy.from_env(env), out, err).run()
