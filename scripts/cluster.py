"""Starts the assistant as several servers behind nginx on this machine (``make cluster``).

    nginx :8080 ─┬─ Rasa :5005 ─┐                      ┌─ action server :5055
                 └─ Rasa :5006 ─┴─ nginx 127.0.0.1:5050 ┴─ action server :5056
    both Rasa servers: conversations in PostgreSQL (database ``clinic``), locks in Redis
    (rasa_ext/lock_store.py); the action servers: consultation requests in the same database.
    the staff console :8001 and the demo page :8000 (its widget talks to nginx :8080).

nginx balances REST round-robin and keeps each socket.io client on one Rasa server
(deploy/nginx.conf, rendered into var/cluster/nginx/). Before anything starts, the PostgreSQL
database is created if it is missing and its tables are created; Redis must answer. The servers run
under scripts/supervisor.py (restarts, health checks, "ready" only when all answer; Ctrl-C stops
all of them).

Environment (defaults in brackets): CLUSTER_HOST [127.0.0.1] and CLUSTER_PORT [8080] for nginx;
RASA_PORT_1 [5005], RASA_PORT_2 [5006]; ACTION_SERVER_PORT_1 [5055], ACTION_SERVER_PORT_2 [5056];
ACTIONS_PROXY_PORT [5050] (nginx's balancer for the action servers); CONSOLE_PORT [8001];
WEB_PORT [8000]; PGHOST [127.0.0.1], PGPORT [5432], PGDATABASE [clinic], PGUSER [postgres],
PGPASSWORD [empty]; REDIS_HOST [127.0.0.1], REDIS_PORT [6379]; RASA_ENDPOINTS
[endpoints.postgres.yml]; RASA_MODEL [models/clinic.tar.gz]; CLUSTER_VAR [var/cluster], where the
rendered configuration and nginx's files go; NGINX [nginx on PATH, else /usr/sbin/nginx].
ACTION_SERVER_TOKEN is generated when unset (contracts #5).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping

from scripts.supervisor import Server, supervise

ROOT = Path(__file__).resolve().parent.parent

TEMPLATE = ROOT / "deploy" / "nginx.conf"


@dataclass(frozen=True)
class Layout:
    """Where every server of the cluster listens, from the environment."""

    host: str
    port: int
    rasa_ports: List[int]
    action_ports: List[int]
    actions_proxy_port: int
    console_port: int
    web_port: int
    var: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Layout":
        def port(name: str, default: int) -> int:
            value = env.get(name) or str(default)
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise ValueError(f"{name} must be a port number, not {value!r}")
            return int(value)

        var = Path(env.get("CLUSTER_VAR") or ROOT / "var" / "cluster")
        return cls(host=env.get("CLUSTER_HOST") or "127.0.0.1", port=port("CLUSTER_PORT", 8080),
                   rasa_ports=[port("RASA_PORT_1", 5005), port("RASA_PORT_2", 5006)],
                   action_ports=[port("ACTION_SERVER_PORT_1", 5055), port("ACTION_SERVER_PORT_2", 5056)],
                   actions_proxy_port=port("ACTIONS_PROXY_PORT", 5050), console_port=port("CONSOLE_PORT", 8001),
                   web_port=port("WEB_PORT", 8000), var=var if var.is_absolute() else ROOT / var)

    @property
    def nginx_prefix(self) -> Path:
        return self.var / "nginx"

    @property
    def url(self) -> str:
        """The address browsers and REST clients use."""
        host = "localhost" if self.host in ("127.0.0.1", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"


def render_nginx(layout: Layout) -> Path:
    """Writes nginx's configuration for ``layout`` (from deploy/nginx.conf) and its folders."""
    prefix = layout.nginx_prefix
    for folder in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        (prefix / folder).mkdir(parents=True, exist_ok=True, mode=0o700)

    def upstreams(ports: List[int]) -> str:
        return "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in ports)

    values = {"prefix": str(prefix), "listen": f"{layout.host}:{layout.port}",
              "actions_port": str(layout.actions_proxy_port),
              "rasa_servers": upstreams(layout.rasa_ports), "action_servers": upstreams(layout.action_ports)}
    text = TEMPLATE.read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    if "{{" in text:
        raise ValueError(f"{TEMPLATE}: a placeholder was left unfilled")
    conf = prefix / "nginx.conf"
    conf.write_text(text, encoding="utf-8")
    return conf


def nginx_binary(env: Mapping[str, str]) -> str:
    found = env.get("NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(found, os.X_OK):
        raise FileNotFoundError("nginx is not installed (make cluster installs it with apt-get)")
    return found


def ensure_database(env: Mapping[str, str]) -> bool:
    """Creates the PostgreSQL database PGDATABASE if it is missing; True if it was created."""
    import psycopg2
    from psycopg2 import sql

    name = env.get("PGDATABASE", "clinic")
    connection = psycopg2.connect(host=env.get("PGHOST", "127.0.0.1"), port=int(env.get("PGPORT", "5432")),
                                  user=env.get("PGUSER", "postgres"), password=env.get("PGPASSWORD") or None,
                                  dbname="postgres", connect_timeout=5)
    try:
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone():
                return False
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    finally:
        connection.close()


def create_tables(env: Dict[str, str]) -> None:
    """Creates the conversations' and requests' tables once, before the servers start.

    Two Rasa servers starting together would otherwise both try to create them, and one can fail
    with a duplicate-type error. ``python -m scripts.migrate`` does it when the project has it;
    otherwise the tracker store named in the endpoints file creates its own tables (as Rasa does at
    start-up) and the action server's store creates the requests table.
    """
    if (ROOT / "scripts" / "migrate.py").exists():
        command = [sys.executable, "-m", "scripts.migrate"]
    else:
        command = [sys.executable, "-c",
                   "import os\n"
                   "from rasa.core.utils import AvailableEndpoints\n"
                   "from rasa.core.tracker_store import TrackerStore\n"
                   "from core.settings import database_url\nfrom core.store import RequestStore\n"
                   "TrackerStore.create(AvailableEndpoints.read_endpoints(os.environ['RASA_ENDPOINTS']).tracker_store)\n"
                   "RequestStore(database_url()).create_table()\n"]
    subprocess.run(command, cwd=ROOT, env=env, check=True)


def check_redis(env: Mapping[str, str]) -> None:
    import redis

    redis.Redis(host=env.get("REDIS_HOST", "127.0.0.1"), port=int(env.get("REDIS_PORT", "6379")),
                socket_timeout=5).ping()


def check_free(host: str, port: int) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise OSError(f"port {port} is already taken") from None


def environment(base: Mapping[str, str], layout: Layout) -> Dict[str, str]:
    """The children's environment: the database, Redis, the endpoints file and the action token."""
    env = dict(base)
    env.setdefault("RASA_TELEMETRY_ENABLED", "false")
    env.setdefault("ACTION_SERVER_TOKEN", secrets.token_hex(32))  # contracts #5
    for name, default in {"PGHOST": "127.0.0.1", "PGPORT": "5432", "PGDATABASE": "clinic", "PGUSER": "postgres",
                          "PGPASSWORD": "", "REDIS_HOST": "127.0.0.1", "REDIS_PORT": "6379",
                          "RASA_ENDPOINTS": "endpoints.postgres.yml"}.items():
        env.setdefault(name, default)
    env["CLINIC_ENDPOINTS"] = env["RASA_ENDPOINTS"]  # the action servers and the console: same database
    env.pop("CLINIC_DB_URL", None)
    # The Rasa servers reach the action servers through nginx (endpoints: ACTION_SERVER_HOST/PORT).
    env["ACTION_SERVER_HOST"] = "127.0.0.1"
    env["ACTION_SERVER_PORT"] = str(layout.actions_proxy_port)
    env["WEB_PORT"] = str(layout.web_port)
    env.setdefault("WEB_ORIGINS", f"http://localhost:{layout.web_port},http://127.0.0.1:{layout.web_port}")
    env["RASA_URL"] = layout.url  # the demo page's widget talks to nginx
    # nginx, on this machine, is the only proxy: its X-Forwarded-For ($remote_addr) names the client
    env.setdefault("TRUSTED_PROXIES", "127.0.0.1")
    return env


def servers(layout: Layout, env: Mapping[str, str], credentials: Path) -> List[Server]:
    """The cluster's servers, for scripts/supervisor.py."""
    python = sys.executable
    model = env.get("RASA_MODEL", str(ROOT / "models" / "clinic.tar.gz"))
    listed: List[Server] = [
        Server(name="nginx", command=[nginx_binary(env), "-p", str(layout.nginx_prefix), "-e",
                                      str(layout.nginx_prefix / "error.log"), "-c",
                                      str(layout.nginx_prefix / "nginx.conf")],
               health_url=f"http://127.0.0.1:{layout.port}/nginx-health", port=layout.port, host=layout.host,
               port_setting="CLUSTER_PORT")]
    for number, port in enumerate(layout.action_ports, 1):
        listed.append(Server(name=f"actions-{number}",
                             command=[python, "-m", "actions", "--host", "127.0.0.1", "--port", str(port)],
                             health_url=f"http://127.0.0.1:{port}/health", port=port,
                             port_setting=f"ACTION_SERVER_PORT_{number}", quiet=(r"sanic\.access",)))
    for number, port in enumerate(layout.rasa_ports, 1):
        listed.append(Server(name=f"rasa-{number}",
                             command=[python, "-m", "rasa_ext", "run", "--model", model,
                                      "--endpoints", env["RASA_ENDPOINTS"], "--credentials", str(credentials),
                                      "--interface", "127.0.0.1", "--port", str(port)],
                             health_url=f"http://127.0.0.1:{port}/", port=port, port_setting=f"RASA_PORT_{number}"))
    listed.append(Server(name="console", command=[python, "-m", "console", "--host", "127.0.0.1",
                                                  "--port", str(layout.console_port)],
                         health_url=f"http://127.0.0.1:{layout.console_port}/login", port=layout.console_port,
                         essential=False, port_setting="CONSOLE_PORT"))
    listed.append(Server(name="web", command=[python, "-m", "web.server"],
                         health_url=f"http://127.0.0.1:{layout.web_port}/", port=layout.web_port,
                         essential=False, env={"WEB_HOST": "127.0.0.1"}, port_setting="WEB_PORT"))
    return listed


def main() -> int:
    try:
        layout = Layout.from_env(os.environ)
    except ValueError as error:
        print(f"make cluster: {error}", file=sys.stderr)
        return 2
    env = environment(os.environ, layout)
    os.umask(0o077)  # what the servers write (nginx's logs, the rendered configuration) is private
    layout.var.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        check_free("127.0.0.1", layout.actions_proxy_port)  # nginx's second port (the supervisor checks the rest)
        check_redis(env)
        if ensure_database(env):
            print(f"Created the PostgreSQL database {env['PGDATABASE']}.", flush=True)
        create_tables(env)
        render_nginx(layout)
        credentials = layout.var / "credentials.yml"
        subprocess.run([sys.executable, "scripts/credentials.py", "--out", str(credentials)],
                       cwd=ROOT, env=env, check=True)
        cluster = servers(layout, env, credentials)
    except Exception as error:  # a clear sentence, not a traceback, for a setup problem
        print(f"make cluster cannot start: {error.__class__.__name__}: {error}", file=sys.stderr)
        return 2
    rasa = ", ".join(f":{p}" for p in layout.rasa_ports)
    actions = ", ".join(f":{p}" for p in layout.action_ports)
    ready = (f"\nThe cluster is ready: {layout.url} (nginx) in front of the Rasa servers {rasa} and the action "
             f"servers {actions}; PostgreSQL database {env['PGDATABASE']}, locks in Redis.\n"
             f"REST: {layout.url}/webhooks/rest/webhook. Demo page: http://localhost:{layout.web_port}/. "
             f"Staff console: http://127.0.0.1:{layout.console_port}/. Press Ctrl-C to stop.\n")
    return supervise(cluster, ready, env)


if __name__ == "__main__":
    sys.exit(main())
