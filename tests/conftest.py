"""Shared fixtures: the real knowledge and domain, rasa_sdk trackers, and real databases."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import pytest
import sqlalchemy as sa
import yaml
from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from core.knowledge import Knowledge
from core.knowledge_loader import get_knowledge

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("CLINIC_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


# What a test without the ``e2e`` mark may not start (``make test-unit`` runs with no server and no model):
# the modules and scripts that serve on a port.
SERVER_MODULES = {"actions", "rasa", "rasa_ext", "console", "web.server", "bench", "http.server"}
SERVER_SCRIPTS = ("serve.py", "cluster.py", "soak_memory.py")


def starts_a_server(args: Any) -> bool:
    """Whether a command line (as given to ``subprocess.Popen``) starts one of the project's servers."""
    words = [str(word) for word in ([args] if isinstance(args, (str, bytes, os.PathLike)) else args)]
    if len(words) == 1:
        words = words[0].split()
    module = next((words[i + 1] for i, word in enumerate(words[:-1]) if word == "-m"), None)
    return module in SERVER_MODULES or any(word.endswith(SERVER_SCRIPTS) for word in words)


@pytest.hookimpl(tryfirst=True)  # before -m selects and pytest-xdist turns the groups into node ids
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``-n``, ``--dist loadgroup``): the tests of a module run together on one worker, so
    that its module-scoped servers start once, and a module that stops or restarts the shared servers has
    them to itself while it does. Each worker starts its own shared servers (a session fixture lives in its
    worker) for the modules it is given: one more start of about 40 s, against the shared modules' several
    minutes on one worker. The longest groups are handed out first (ESTIMATES, seconds). And, with or
    without workers: a test on the shared servers is an ``e2e`` test, marked or not."""
    for item in items:
        if "shared_servers" in item.fixturenames and not item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.e2e)
    if not getattr(config.option, "loadgroup", False):  # set on the workers of -n ... --dist loadgroup
        return

    def group(item) -> str:
        return item.module.__name__

    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
    items.sort(key=lambda item: -ESTIMATES.get(group(item), 0))  # stable: file order otherwise


# Rough seconds per group on the 2-core machine (docs/testing.md): only the order matters. The rest come after,
# in file order.
ESTIMATES: Dict[str, float] = {
    "tests.test_bench": 300, "tests.test_supervisor": 300, "tests.test_cluster": 240, "tests.test_lock_store": 160,
    "tests.test_serve_workers": 150, "tests.test_db_faults": 150, "tests.test_fair_share_cross_site": 130,
    "tests.test_channel_e2e": 120, "tests.test_fair_share": 110, "tests.test_fair_share_cost": 110,
    "tests.test_memory": 100, "tests.test_action_payload": 100, "tests.test_patches": 100, "tests.test_door": 90,
    "tests.test_e2e": 90, "tests.test_web": 80, "tests.test_never_silent": 70, "tests.test_fuzz": 60,
    "tests.test_tracker_store": 60, "tests.console.test_hostile": 60, "tests.console.test_e2e": 40,
    "tests.test_action_server": 40,
}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _ServersRefused(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _ServersRefused(item):
        yield


class _ServersRefused:
    """Fails a test that starts a server (in its fixtures or its body) without the ``e2e`` mark."""

    def __init__(self, item) -> None:
        self.item = item
        self.original = subprocess.Popen.__init__

    def __enter__(self) -> None:
        if self.item.get_closest_marker("e2e"):
            return
        original, name = self.original, self.item.nodeid

        def refusing(popen, args, *rest, **kwargs):
            if starts_a_server(args):
                raise AssertionError(f"{name} starts a server ({args!r}) without the e2e mark")
            original(popen, args, *rest, **kwargs)
        subprocess.Popen.__init__ = refusing

    def __exit__(self, *exc) -> None:
        subprocess.Popen.__init__ = self.original



@pytest.fixture(scope="session")
def knowledge() -> Knowledge:
    return get_knowledge()


@pytest.fixture(scope="session")
def domain() -> Dict[str, Any]:
    return yaml.safe_load((ROOT / "domain.yml").read_text())


# The web page origin the socket.io tests connect from (test_channels.py), besides the demo page's own.
PAGE_ORIGIN = "http://localhost:8000"


@pytest.fixture(scope="session")
def shared_servers(tmp_path_factory):
    """The real Rasa and action servers on a SQLite database, with the channels ``make run`` opens when
    CALLBACK_URL and WEB_ORIGINS are set: the project's credentials.yml, the callback channel posting to a
    local receiver (``shared_servers.receiver``, :class:`devtools.servers.Receiver`), and socket.io open to
    PAGE_ORIGIN and to the demo page on ``shared_servers.web_port`` (test_web.py serves it there).

    Started once per pytest-xdist worker for every module that needs nothing else (a start takes 30-45 s on the
    2-core machine):
    test_action_server, test_channels, test_door, test_e2e, test_fuzz, test_never_silent, test_patches and
    test_web. Each test talks as visitors of its own and reads back only its own visitors' conversations
    and callbacks; a test that stops, pauses or kills a server brings it back before it ends."""
    from devtools.servers import Receiver, Servers, free_port
    from scripts import credentials

    folder = tmp_path_factory.mktemp("shared-servers")
    receiver = Receiver()
    web_port = free_port()
    path = folder / "credentials.yml"
    credentials.write(credentials.render({"CALLBACK_URL": receiver.url,
                                          "WEB_ORIGINS": f"{PAGE_ORIGIN},http://127.0.0.1:{web_port}"}), path)
    running = Servers(folder, credentials=path)
    running.receiver, running.web_port = receiver, web_port
    running.start()
    yield running
    running.stop()
    receiver.close()


@pytest.fixture()
def dispatcher() -> CollectingDispatcher:
    return CollectingDispatcher()


def make_tracker(
    intent: Optional[str] = None,
    text: str = "",
    confidence: float = 0.95,
    entities: Iterable[Dict[str, Any]] = (),
    slots: Optional[Dict[str, Any]] = None,
    active_loop: Optional[str] = None,
    latest_action: str = "action_listen",
    events: Optional[List[Dict[str, Any]]] = None,
    sender_id: Optional[str] = None,
) -> Tracker:
    """A rasa_sdk tracker as the action server receives it after a visitor's message."""
    latest_message = {"text": text, "intent": {"name": intent, "confidence": confidence},
                      "entities": list(entities)}
    return Tracker(
        sender_id=sender_id or uuid.uuid4().hex,
        slots=dict(slots or {}),
        latest_message=latest_message,
        events=list(events or []),
        paused=False,
        followup_action=None,
        active_loop={"name": active_loop} if active_loop else {},
        latest_action_name=latest_action,
    )


def step_intents(step):
    """The intents a rule step is for: its ``intent``, or every ``intent`` of an ``or`` step."""
    if "intent" in step:
        return {step["intent"]}
    return {part["intent"] for part in step.get("or", ()) if "intent" in part}


def run(action: Action, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Runs ``action`` as the action server does and returns its events."""
    return asyncio.run(action.run(dispatcher, tracker, domain))


def texts(dispatcher: CollectingDispatcher) -> List[str]:
    """The texts of the messages an action sent."""
    return [message.get("text") or "" for message in dispatcher.messages]


def pg_engine() -> sa.engine.Engine:
    engine = sa.create_engine(PG_URL, future=True)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("select 1"))
    except sa.exc.OperationalError as error:  # a missing service is a failure, never a skip
        pytest.fail(f"PostgreSQL is not reachable at {PG_URL}: {error}")
    return engine


@pytest.fixture()
def pg_schema_url() -> Iterable[str]:
    """A PostgreSQL URL whose tables land in a fresh schema, dropped afterwards."""
    engine = pg_engine()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with engine.begin() as connection:
        connection.execute(sa.text(f'create schema "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f'drop schema "{schema}" cascade'))
        engine.dispose()
