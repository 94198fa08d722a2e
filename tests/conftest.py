"""Shared fixtures: the real knowledge and domain, rasa_sdk trackers, and real databases."""

from __future__ import annotations

import asyncio
import os
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


@pytest.fixture(scope="session")
def knowledge() -> Knowledge:
    return get_knowledge()


@pytest.fixture(scope="session")
def domain() -> Dict[str, Any]:
    return yaml.safe_load((ROOT / "domain.yml").read_text())


@pytest.fixture(scope="session")
def shared_servers(tmp_path_factory):
    """The real Rasa and action servers on a SQLite database, with the channels ``make run`` opens when
    CALLBACK_URL is set (the project's credentials.yml and the callback channel, whose URL here is a port
    nobody listens on: Rasa's own RestInput, its failures logged by Rasa itself). Started once for the modules
    that need nothing else (a start takes about 35 s on the 2-core machine): test_action_server.py,
    test_door.py, test_e2e.py, test_fuzz.py. Each test talks as visitors of its own; a test that stops or
    restarts a server starts it again before it ends."""
    from scripts import credentials
    from tests.servers import Servers

    folder = tmp_path_factory.mktemp("shared-servers")
    path = folder / "credentials.yml"
    credentials.write(credentials.render({"CALLBACK_URL": "http://127.0.0.1:9/bot"}), path)
    running = Servers(folder, credentials=path).start()
    yield running
    running.stop()


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
