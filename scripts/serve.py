"""``make run``: starts the assistant's four servers under scripts/supervisor.py and keeps them up.

* actions (essential): ``python -m actions`` on 127.0.0.1:5055, health ``GET /health``;
* rasa (essential): the Rasa server with the REST and socket.io channels on 127.0.0.1:5005, its HTTP
  API off, health ``GET /``;
* console (not essential): the staff console, ``python -m console``, on 127.0.0.1:8001, health its
  stylesheet (answers without signing in, touches no database);
* web (not essential): the demo clinic page with the chat widget, ``python -m web.server``, on
  127.0.0.1:8000, health its stylesheet.

A crashed or hung server is restarted (see scripts/supervisor.py); the chat keeps answering while the
console or the demo page is down. Ctrl-C (or SIGTERM) stops every server.

Before starting: the umask becomes 077 and the data folder (``CLINIC_VAR_DIR``, default var/) is made
0700 with its files 0600, so the database and keys are private even if an older run left them readable;
ACTION_SERVER_TOKEN, the secret the Rasa server sends to the action server, is generated when unset;
build/credentials.yml is written by scripts/credentials.py (unless RASA_CREDENTIALS names another file).
Tables come from ``python -m scripts.migrate``, which the Makefile runs before this script.

Environment: RASA_HOST, RASA_PORT, ACTION_SERVER_HOST, ACTION_SERVER_PORT, CONSOLE_HOST, CONSOLE_PORT,
WEB_HOST, WEB_PORT, WEB_ORIGINS (the pages allowed to open the widget's socket), RASA_URL (the Rasa
address browsers use), RASA_MODEL, RASA_ENDPOINTS for another endpoints file (the actions and the console
read CLINIC_ENDPOINTS, which defaults to it), RASA_CREDENTIALS for another credentials file, RASA_WORKERS
(``make run WORKERS=2``: Sanic worker processes of the Rasa server, sharing Redis as their lock store; see
:func:`use_workers`), and the supervisor's SUPERVISOR_* timings.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

from scripts.supervisor import EXIT_NOT_STARTED, Server, supervise

ROOT = Path(__file__).resolve().parent.parent
HEALTH_MARK = "supervisor-health-check"  # in the web server's health URL, so its log line can be hidden
EMPTY_ACCESS_LINE = r"sanic\.access:\s*$"  # the action server logs an empty line per request


def servers(env: Dict[str, str]) -> List[Server]:
    """The four servers of ``make run``."""
    python = sys.executable
    actions_host, actions_port = env.get("ACTION_SERVER_HOST", "127.0.0.1"), int(env.get("ACTION_SERVER_PORT", "5055"))
    rasa_host, rasa_port = env.get("RASA_HOST", "127.0.0.1"), int(env.get("RASA_PORT", "5005"))
    console_host, console_port = env.get("CONSOLE_HOST", "127.0.0.1"), int(env.get("CONSOLE_PORT", "8001"))
    web_host, web_port = env.get("WEB_HOST", "127.0.0.1"), int(env.get("WEB_PORT", "8000"))
    return [
        Server("actions", [python, "-m", "actions", "--host", actions_host, "--port", str(actions_port)],
               health_url=f"http://{local(actions_host)}:{actions_port}/health", port=actions_port,
               host=actions_host, port_setting="ACTION_SERVER_PORT", start_timeout=120, quiet=(EMPTY_ACCESS_LINE,),
               cwd=str(ROOT)),
        Server("rasa", [python, "-m", "rasa_ext", "run", "--model", env.get("RASA_MODEL", "models/clinic.tar.gz"),
                        "--endpoints", env["RASA_ENDPOINTS"], "--credentials", env["RASA_CREDENTIALS"],
                        "--interface", rasa_host, "--port", str(rasa_port)],
               health_url=f"http://{local(rasa_host)}:{rasa_port}/", port=rasa_port, host=rasa_host,
               port_setting="RASA_PORT", cwd=str(ROOT)),
        Server("console", [python, "-m", "console", "--host", console_host, "--port", str(console_port)],
               health_url=f"http://{local(console_host)}:{console_port}/static/console.css", port=console_port,
               essential=False, host=console_host, port_setting="CONSOLE_PORT", start_timeout=120, cwd=str(ROOT)),
        Server("web", [python, "-m", "web.server"],
               health_url=f"http://{local(web_host)}:{web_port}/widget.css?{HEALTH_MARK}", port=web_port,
               essential=False, host=web_host, port_setting="WEB_PORT", start_timeout=60,
               quiet=(re.escape(HEALTH_MARK),), cwd=str(ROOT)),
    ]


def rasa_workers(env: Dict[str, str]) -> int:
    """``RASA_WORKERS`` (``make run WORKERS=2``): the Rasa server's Sanic worker processes, 1 to 8."""
    value = (env.get("RASA_WORKERS") or "1").strip()
    if not value.isdigit() or not 1 <= int(value) <= 8:
        raise ValueError(f"RASA_WORKERS must be a whole number from 1 to 8, not {value!r}")
    return int(value)


def use_workers(env: Dict[str, str], workers: int) -> Optional[str]:
    """Prepares ``env`` for a Rasa server of ``workers`` Sanic worker processes; a problem, or None.

    The workers share the conversations (the SQL tracker store) and need a lock store they all reach, so
    that two messages of one conversation are never handled at once by two of them: the project's atomic
    Redis lock store (``REDIS_HOST``, ``REDIS_PORT``: 127.0.0.1:6379, database 1), added to a copy of the
    endpoints file in the data folder unless that file names a lock store. Rasa ignores ``SANIC_WORKERS`` without
    one. A socket.io session lives in the worker whose connection it came on, so the demo page's widget
    connects with WebSockets only (one connection, one worker); its default, long-polling first, would
    send the requests of one session to different workers.
    """
    import redis
    import yaml

    host, port = env.setdefault("REDIS_HOST", "127.0.0.1"), env.setdefault("REDIS_PORT", "6379")
    try:
        redis.Redis(host=host, port=int(port), socket_timeout=5).ping()
    except (redis.RedisError, ValueError) as error:
        return (f"RASA_WORKERS={workers} needs Redis for the lock store the workers share, and Redis at "
                f"{host}:{port} does not answer ({type(error).__name__}); set REDIS_HOST/REDIS_PORT or "
                f"start Redis")
    endpoints = Path(env["RASA_ENDPOINTS"])
    endpoints = endpoints if endpoints.is_absolute() else ROOT / endpoints
    settings = yaml.safe_load(endpoints.read_text()) or {}  # ${VARIABLES} stay as they are
    if not settings.get("lock_store"):
        settings["lock_store"] = {"type": "rasa_ext.lock_store.AtomicRedisLockStore", "url": "${REDIS_HOST}",
                                  "port": "${REDIS_PORT}", "db": 1, "key_prefix": "run"}
        copy = Path(env.get("CLINIC_VAR_DIR") or ROOT / "var") / "endpoints.workers.yml"
        copy.write_text(f"# Written by scripts/serve.py for RASA_WORKERS={workers}: {endpoints.name} and a lock store\n"
                        + yaml.safe_dump(settings, sort_keys=False))
        env["RASA_ENDPOINTS"] = str(copy)
    env["SANIC_WORKERS"] = str(workers)
    env.setdefault("WEB_SOCKET_TRANSPORTS", "websocket")
    return None


def local(host: str) -> str:
    """The address the supervisor uses to reach a server bound to ``host``."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def make_private(folder: Path) -> None:
    """The data folder 0700 and its files 0600, whatever an older run or another umask left."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in [folder, *folder.iterdir()]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid() or not info.st_mode & 0o077:
            continue
        private = 0o700 if stat.S_ISDIR(info.st_mode) else 0o600
        os.chmod(path, private)
        print(f"supervisor | {path} was readable by others ({stat.S_IMODE(info.st_mode):o}): "
              f"now {private:o}", flush=True)


def main() -> int:
    os.umask(0o077)  # what this script and every server write is private (children inherit it)
    env = dict(os.environ)
    make_private(Path(env.get("CLINIC_VAR_DIR") or ROOT / "var"))
    if not env.get("ACTION_SERVER_TOKEN"):
        env["ACTION_SERVER_TOKEN"] = secrets.token_hex(32)
    web_port = env.setdefault("WEB_PORT", "8000")
    env.setdefault("WEB_ORIGINS", f"http://localhost:{web_port},http://127.0.0.1:{web_port}")
    env.setdefault("RASA_URL", f"http://localhost:{env.get('RASA_PORT', '5005')}")
    env.setdefault("RASA_ENDPOINTS", "endpoints.yml")
    env.setdefault("CLINIC_ENDPOINTS", env["RASA_ENDPOINTS"])
    try:
        workers = rasa_workers(env)
    except ValueError as error:
        print(f"supervisor | {error}", file=sys.stderr, flush=True)
        return EXIT_NOT_STARTED
    if workers > 1:
        problem = use_workers(env, workers)
        if problem:
            print(f"supervisor | {problem}", file=sys.stderr, flush=True)
            return EXIT_NOT_STARTED
    if "RASA_CREDENTIALS" not in env:
        env["RASA_CREDENTIALS"] = "build/credentials.yml"
        if subprocess.run([sys.executable, "scripts/credentials.py", "--out", env["RASA_CREDENTIALS"]],
                          cwd=ROOT, env=env).returncode:
            return EXIT_NOT_STARTED
    rasa = f"http://{env.get('RASA_HOST', '127.0.0.1')}:{env.get('RASA_PORT', '5005')}"
    console = f"http://{env.get('CONSOLE_HOST', '127.0.0.1')}:{env.get('CONSOLE_PORT', '8001')}"
    ready = (f"The assistant is ready. Demo page with the chat widget: http://localhost:{web_port}/\n"
             f"REST channel: {rasa}/webhooks/rest/webhook (socket.io on {rasa}). Staff console: {console}.\n"
             f"Crashed or hung servers are restarted. Press Ctrl-C to stop.")
    return supervise(servers(env), ready, env)


if __name__ == "__main__":
    sys.exit(main())
