"""The fair-share limiter on its own (channels/fair_share.py): token buckets in memory and in Redis."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis

from channels import fair_share
from channels.fair_share import FairShare, MemoryBuckets, Rate, RedisBuckets, rates_from_env

REDIS_URL = "redis://127.0.0.1:6379/3"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(coroutine):
    return asyncio.new_event_loop().run_until_complete(coroutine)


def test_the_defaults_and_the_environment():
    rates = rates_from_env({})
    assert rates == {"address": Rate(60, 30), "conversation": Rate(20, 10)}
    rates = rates_from_env({"CLINIC_RATE_PER_ADDRESS": "0", "CLINIC_RATE_PER_CONVERSATION": "6",
                            "CLINIC_BURST_PER_CONVERSATION": "2"})
    assert rates == {"address": None, "conversation": Rate(6, 2)}
    for bad in ({"CLINIC_RATE_PER_ADDRESS": "many"}, {"CLINIC_BURST_PER_ADDRESS": "-1"},
                {"CLINIC_BURST_PER_CONVERSATION": "0"}):
        with pytest.raises(ValueError):
            rates_from_env(bad)


def test_a_memory_bucket_admits_its_burst_then_its_rate():
    clock = Clock()
    limits = FairShare({"address": Rate(60, 3), "conversation": None}, MemoryBuckets(clock))
    assert [run(limits.admit("a", f"c{index}")) for index in range(3)] == [0, 0, 0]
    wait = run(limits.admit("a", "c9"))
    assert wait == pytest.approx(1.0)  # one a second
    assert run(limits.admit("b", "c9")) == 0  # another address has its own share
    clock.now += 1.0
    assert run(limits.admit("a", "c9")) == 0
    assert run(limits.admit("a", "c9")) > 0


def test_both_buckets_must_hold_a_token_and_a_refusal_takes_none():
    clock = Clock()
    limits = FairShare({"address": Rate(60, 5), "conversation": Rate(60, 2)}, MemoryBuckets(clock))
    assert [run(limits.admit("a", "c")) for _ in range(3)] == [0, 0, pytest.approx(1.0)]
    # the conversation's refusal took nothing from the address: three more conversations get through
    assert [run(limits.admit("a", f"other{index}")) for index in range(3)] == [0, 0, 0]
    assert run(limits.admit("a", "fresh")) > 0


def test_memory_follows_the_recent_clients_only():
    clock = Clock()
    store = MemoryBuckets(clock)
    limits = FairShare({"address": Rate(60, 2), "conversation": Rate(60, 2)}, store)
    for index in range(fair_share.PRUNE_EVERY - 1):
        run(limits.admit(f"client{index}", f"conversation{index}"))
    assert len(store) == 2 * (fair_share.PRUNE_EVERY - 1)
    clock.now += 3  # every bucket is full again
    run(limits.admit("late", "late"))
    assert len(store) == 2


def test_the_limit_costs_next_to_nothing():
    limits = FairShare(rates_from_env({}), MemoryBuckets())
    started = time.perf_counter()
    for index in range(20000):
        run_now = limits.store.take_now
        run_now([(f"a{index % 50}", Rate(60, 30)), (f"c{index}", Rate(20, 10))])
    assert (time.perf_counter() - started) / 20000 < 0.0005  # generous: about 5 µs here


@pytest.fixture()
def redis_prefix():
    prefix = f"fairshare-test-{uuid.uuid4().hex}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)


def test_redis_buckets_are_shared_by_every_limiter_of_the_same_prefix(redis_prefix):
    rates = {"address": Rate(6, 3), "conversation": Rate(60, 10)}  # one every 10 s: a busy machine is slow
    first = FairShare(rates, RedisBuckets(REDIS_URL, timeout=10), redis_prefix)
    second = FairShare(rates, RedisBuckets(REDIS_URL, timeout=10), redis_prefix)

    async def scenario():
        results = [await first.admit("a", "c1"), await second.admit("a", "c2"), await first.admit("a", "c3"),
                   await second.admit("a", "c4")]
        return results, await second.admit("b", "c5")

    results, other = run(scenario())
    assert results[:3] == [0, 0, 0] and 5 < results[3] <= 10
    assert other == 0
    keys = redis.Redis.from_url(REDIS_URL).keys(f"{redis_prefix}:*")
    assert keys and all(redis.Redis.from_url(REDIS_URL).pttl(key) > 0 for key in keys)  # they expire
    assert all(len(key.split(b":")[-1]) == 24 for key in keys)  # hashed, not stored as sent


def test_concurrent_redis_admissions_never_exceed_the_burst(redis_prefix):
    limits = FairShare({"address": Rate(1, 20), "conversation": None}, RedisBuckets(REDIS_URL, timeout=10), redis_prefix)

    async def scenario():
        return await asyncio.gather(*(limits.admit("a", str(index)) for index in range(100)))

    assert sum(1 for wait in run(scenario()) if wait == 0) == 20


def test_a_redis_that_does_not_answer_admits_and_warns(caplog):
    limits = FairShare(rates_from_env({}), RedisBuckets("redis://127.0.0.1:9/0"))
    assert run(limits.admit("a", "c")) == 0
    assert "did not answer" in caplog.text
