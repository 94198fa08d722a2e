"""The two assistants the benchmark compares, started as real processes on free local ports.

* :func:`project`: the project's action server and ``python -m rasa_ext run`` (patched Rasa), with the
  project's SQL tracker store on a fresh SQLite file in a temporary folder, as ``make run`` starts them.
* :func:`stock`: a ``rasa init --no-prompt`` bot, made and trained in a folder with the project's own Rasa
  and served by plain ``rasa run`` (no patches, Rasa's defaults: in-memory tracker store). Its action
  server is not needed (the init bot has no custom action in its stories).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import requests

from devtools.servers import ROOT, Servers, free_port

RASA = str(Path(sys.executable).parent / "rasa")
BASE_ENV = {"RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2", "SANIC_WORKERS": "1",
            "PYTHONWARNINGS": "ignore::DeprecationWarning", "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
            # the load comes from one address and each sender talks as fast as answered: no fair-share limit
            "CLINIC_RATE_PER_ADDRESS": "0", "CLINIC_RATE_PER_CONVERSATION": "0"}


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB (from /proc; Linux only)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024


@dataclass
class Assistant:
    """One assistant under test: its processes, its REST address, and how long it took to be ready."""

    name: str
    folder: Path
    env: Dict[str, str]
    commands: Dict[str, List[str]]
    health: Dict[str, str]
    url: str
    cwd: Path
    processes: Dict[str, subprocess.Popen] = field(default_factory=dict)
    ready_s: float = 0.0

    def start(self, timeout: float = 600) -> "Assistant":
        """Starts every process and waits until all answer their health URL; records the time to ready."""
        started = time.monotonic()
        for name, command in self.commands.items():
            log = open(self.folder / f"{name}.log", "ab")
            self.processes[name] = subprocess.Popen(command, cwd=self.cwd, env=self.env, stdout=log,
                                                    stderr=subprocess.STDOUT, start_new_session=True)
        waiting = dict(self.health)
        deadline = started + timeout
        while waiting:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: {', '.join(waiting)} not ready within {timeout} s")
            for name, url in list(waiting.items()):
                if self.processes[name].poll() is not None:
                    log = (self.folder / f"{name}.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{self.name}: {name} exited:\n{log}")
                try:
                    if requests.get(url, timeout=2).ok:
                        del waiting[name]
                except requests.RequestException:
                    pass
            time.sleep(0.1)
        self.ready_s = time.monotonic() - started
        return self

    def rss_mb(self, name: str) -> float:
        return tree_rss_mb(self.processes[name].pid)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


def project(folder: Path, workers: int = 1, extra_env: Optional[Dict[str, str]] = None,
            patched: bool = True) -> Assistant:
    """The project's assistant on a fresh SQLite database in ``folder`` (``patched=False``: served by
    Rasa as released, without ``rasa_ext.patches``, to measure what the patches change): the servers,
    ports, endpoints and secrets of the tests' harness (devtools.servers), started and timed here."""
    servers = Servers(folder, env={**BASE_ENV, "SANIC_WORKERS": str(workers), **(extra_env or {})})
    if workers > 1:
        # Several Sanic workers need a lock store they all share (rasa/core/utils.py ignores
        # SANIC_WORKERS otherwise): the project's atomic Redis lock store (rasa_ext/lock_store.py), with a
        # Redis key prefix of this run's own.
        with servers.endpoints.open("a") as endpoints:
            endpoints.write("lock_store:\n  type: rasa_ext.lock_store.AtomicRedisLockStore\n  url: 127.0.0.1\n"
                            f"  port: 6379\n  key_prefix: bench{servers.rasa_port}\n")
    return Assistant(name="project", folder=folder, env=servers.env, cwd=ROOT, url=servers.url,
                     commands={"actions": servers.action_command(), "rasa": servers.rasa_command(patched)},
                     health=servers.health)


def make_stock_bot(folder: Path, epochs: Optional[int] = None) -> Path:
    """Creates and trains ``rasa init --no-prompt`` in ``folder`` unless a trained one is already there.

    With ``epochs``, the bot's config.yml is Rasa's default configuration (what Rasa fills in for the
    init bot's empty one) written out with that many epochs for each trained component: a quick bot for
    testing the harness, never for figures. A folder keeps the epochs it was made with (``epochs.txt``);
    asking for others is refused rather than mixing them up."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **BASE_ENV}
    marker = folder / "epochs.txt"
    wanted = str(epochs or "default")
    if (folder / "domain.yml").exists() and (marker.read_text().strip() if marker.exists() else "default") != wanted:
        raise RuntimeError(f"{folder} holds a stock bot made with other epochs; delete it or use another folder")
    if not (folder / "domain.yml").exists() and epochs:
        # rasa init's files without its training (which would use 100 epochs), then the written-out config.
        import rasa
        import yaml
        from rasa.cli.scaffold import create_initial_project

        create_initial_project(str(folder))
        config = yaml.safe_load((Path(rasa.__file__).parent / "engine" / "recipes" / "config_files"
                                 / "default_config.yml").read_text())
        for part in config["pipeline"] + config["policies"]:
            if "epochs" in part:
                part["epochs"] = epochs
        (folder / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    elif not (folder / "domain.yml").exists():
        subprocess.run([RASA, "init", "--no-prompt", "--init-dir", str(folder)], cwd=folder, env=env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, input=b"")
    if not marker.exists():
        marker.write_text(wanted + "\n")
    models = sorted((folder / "models").glob("*.tar.gz"))
    if not models:
        subprocess.run([RASA, "train", "--fixed-model-name", "stock", "--out", "models"], cwd=folder, env=env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        models = sorted((folder / "models").glob("*.tar.gz"))
    return models[-1]


def stock(bot: Path, folder: Path, epochs: Optional[int] = None) -> Assistant:
    """The stock bot in ``bot`` (made by :func:`make_stock_bot`), served as ``rasa run`` serves it."""
    model = make_stock_bot(bot, epochs)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **BASE_ENV}
    return Assistant(
        name="stock", folder=folder, env=env, cwd=bot, url=url,
        commands={"rasa": [RASA, "run", "--model", str(model), "--interface", "127.0.0.1", "--port", str(port)]},
        health={"rasa": url + "/"})
