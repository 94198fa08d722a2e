"""The messaging channels' shared store (channels/platform_store.py) on a real PostgreSQL database and a
SQLite file: a delivery id is taken once whichever server (engine) sees it first, counts per sender, and
the options offered for a numbered reply."""

from __future__ import annotations

import datetime as dt
import threading
from typing import List

import pytest
import sqlalchemy as sa

from channels.platform_store import PlatformStore
from channels.shaping import Option
from scripts.migrate import migrate

WINDOW = dt.timedelta(hours=1)


@pytest.mark.postgres
def test_a_delivery_is_taken_once_across_servers_at_the_same_moment(pg_schema_url):
    stores = [PlatformStore(pg_schema_url) for _ in range(4)]  # four servers, each its own engine and pool
    stores[0].create_tables()
    for round_ in range(10):
        barrier = threading.Barrier(len(stores))
        taken: List[bool] = []

        def deliver(store: PlatformStore) -> None:
            barrier.wait()
            taken.append(store.first_delivery("twilio", f"SM{round_:032d}", "twilio:" + "a" * 32))

        threads = [threading.Thread(target=deliver, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(taken) == [False, False, False, True], round_
    # the same id on another channel is another message
    assert stores[1].first_delivery("telegram", f"SM{0:032d}", "telegram:" + "b" * 32)
    assert stores[2].recent("twilio:" + "a" * 32, WINDOW) == 10
    for store in stores:
        store.engine.dispose()


def test_recent_counts_only_the_window_and_prune_forgets_old_deliveries(tmp_path):
    store = PlatformStore(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.create_tables()
    for index in range(3):
        assert store.first_delivery("slack", f"Ev{index}", "slack:" + "c" * 32)
    assert store.recent("slack:" + "c" * 32, WINDOW) == 3
    assert store.recent("slack:" + "d" * 32, WINDOW) == 0
    assert store.recent("slack:" + "c" * 32, dt.timedelta(seconds=-1)) == 0  # none in the future
    store.prune(older_than=dt.timedelta(seconds=-1))
    assert store.recent("slack:" + "c" * 32, WINDOW) == 0
    assert store.first_delivery("slack", "Ev0", "slack:" + "c" * 32)  # forgotten: taken again


def test_options_are_remembered_per_conversation_and_replaced(tmp_path):
    store = PlatformStore(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.create_tables()
    offered = (Option("Symptoms", "/ask_symptoms"), Option("Request a consultation", '/request{"x":"é"}'))
    store.offer("twilio:1", offered)
    assert store.options("twilio:1") == offered and store.options("twilio:2") == ()
    store.offer("twilio:1", offered[:1])
    assert store.options("twilio:1") == offered[:1]
    store.offer("twilio:1", ())
    assert store.options("twilio:1") == ()


@pytest.mark.postgres
def test_migrate_creates_the_channel_tables(pg_schema_url):
    created = migrate(pg_schema_url)
    assert {"channel_deliveries", "channel_options"} <= set(created)
    assert migrate(pg_schema_url) == []  # nothing to create the second time
    engine = sa.create_engine(pg_schema_url, future=True)
    try:
        assert {"channel_deliveries", "channel_options"} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
