"""A fair share for each client: token buckets per client address and per conversation, checked at the
door of every channel before a message costs anything.

One call, for any channel (the project's REST, callback and socket.io channels use it; a new channel
does the same)::

    from channels import fair_share

    wait = await fair_share.admit(client, conversation)   # seconds to wait, or 0.0 when admitted
    if wait:
        ...  # answer knowledge.door["slow_down"] (REST: HTTP 429 with Retry-After), do not handle it

``client`` is the client's hashed address (``door.client_metadata(key, address)["client"]``, what the
message's metadata carries) or, for a platform that gives no address, the platform's user id;
``conversation`` is the conversation id. A message is admitted only if both buckets hold a token, and
then takes one from each: one address cannot take more than its share of the server, one conversation
no more than a person types, and a refused message costs a dictionary lookup (or one Redis call).

The buckets (environment; a rate of 0 turns that limit off):

* ``CLINIC_RATE_PER_ADDRESS`` messages per minute, refilled continuously (default 60), up to
  ``CLINIC_BURST_PER_ADDRESS`` at once (default 30);
* ``CLINIC_RATE_PER_CONVERSATION`` (default 20) and ``CLINIC_BURST_PER_CONVERSATION`` (default 10).

Where they live: in this process's memory, unless ``CLINIC_RATE_LIMIT_REDIS`` names a Redis URL
(``redis://host:port/db``), which ``rasa_ext/__main__.py`` sets from the endpoints' Redis lock store
(``make cluster``, ``make run WORKERS=2``): then every server and worker shares the same buckets, through
one atomic Lua script per message. Keys are ``<CLINIC_RATE_LIMIT_PREFIX, default "fairshare">:<kind>:<hash>``
and expire once full again. If Redis does not answer, messages are admitted (the limit is a protection,
not a dependency: the chat keeps answering) and a warning is logged at most once a minute.

No Rasa import here: tests/test_fair_share_limits.py tests it on its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Text, Tuple

logger = logging.getLogger(__name__)

RATE_ENV = {
    "address": ("CLINIC_RATE_PER_ADDRESS", 60, "CLINIC_BURST_PER_ADDRESS", 30),
    "conversation": ("CLINIC_RATE_PER_CONVERSATION", 20, "CLINIC_BURST_PER_CONVERSATION", 10),
}
REDIS_ENV = "CLINIC_RATE_LIMIT_REDIS"
PREFIX_ENV = "CLINIC_RATE_LIMIT_PREFIX"
# A refused message is answered after min(wait, TARPIT_SECONDS): a client that sends as fast as it is
# answered then sends about one message a second per connection instead of hundreds (each refusal is
# cheap, but hundreds a second still queue before other visitors' turns); a sleeping answer costs a timer.
TARPIT_SECONDS = 1.0
REDIS_TIMEOUT = 0.5  # seconds: a slow Redis must not become the slow part of a turn
PRUNE_EVERY = 1024  # calls between two sweeps of the in-memory buckets that are full again


@dataclass(frozen=True)
class Rate:
    per_minute: float
    burst: int

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0

    @property
    def refill_seconds(self) -> float:
        """How long an empty bucket takes to be full again."""
        return self.burst / self.per_second


def rates_from_env(env: Optional[Dict[str, str]] = None) -> Dict[str, Optional[Rate]]:
    """The two rates from the environment (None: that limit is off).

    Raises:
        ValueError: a variable is not a number, is negative, or a burst is below 1 for a limit that is on.
    """
    env = dict(os.environ if env is None else env)
    rates: Dict[str, Optional[Rate]] = {}
    for kind, (rate_name, rate_default, burst_name, burst_default) in RATE_ENV.items():
        try:
            per_minute = float(env.get(rate_name, "").strip() or rate_default)
            burst = int(env.get(burst_name, "").strip() or burst_default)
        except ValueError:
            raise ValueError(f"{rate_name} and {burst_name} must be numbers") from None
        if per_minute < 0 or burst < 0:
            raise ValueError(f"{rate_name} and {burst_name} must be 0 or more")
        if per_minute and burst < 1:
            raise ValueError(f"{burst_name} must be 1 or more when {rate_name} is set")
        rates[kind] = Rate(per_minute, burst) if per_minute else None
    return rates


def _digest(value: Text) -> Text:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:24]


class MemoryBuckets:
    """Token buckets in this process's memory (one server, one worker)."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._buckets: Dict[Text, Tuple[float, float]] = {}  # key -> (tokens, when)
        self._refill: Dict[Text, float] = {}
        self._calls = 0

    async def take(self, buckets: Sequence[Tuple[Text, Rate]]) -> float:
        return self.take_now(buckets)

    def take_now(self, buckets: Sequence[Tuple[Text, Rate]]) -> float:
        now = self._clock()
        self._calls += 1
        if self._calls % PRUNE_EVERY == 0:
            self._prune(now)
        levels: List[float] = []
        for key, rate in buckets:
            tokens, when = self._buckets.get(key, (float(rate.burst), now))
            tokens = min(float(rate.burst), tokens + (now - when) * rate.per_second)
            if tokens < 1:
                return (1 - tokens) / rate.per_second
            levels.append(tokens)
        for (key, rate), tokens in zip(buckets, levels):
            self._buckets[key] = (tokens - 1, now)
            self._refill[key] = rate.refill_seconds
        return 0.0

    def _prune(self, now: float) -> None:
        # A bucket that has had time to fill up again is the same as no bucket: forget it, so that
        # memory follows the clients of the last few minutes, not all clients ever seen.
        for key in [key for key, (_, when) in self._buckets.items() if now - when >= self._refill.get(key, 0)]:
            del self._buckets[key]
            self._refill.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)


# KEYS: the buckets; ARGV[1]: now in ms; then for each bucket its rate (tokens per ms) and burst.
# Returns 0 when every bucket had a token (one is taken from each), else the ms to wait.
_TAKE = """
local now = tonumber(ARGV[1])
local levels = {}
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', key, 't', 'at')
  local tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  if tokens < 1 then return math.ceil((1 - tokens) / rate) end
  levels[i] = tokens
end
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  redis.call('HSET', key, 't', tostring(levels[i] - 1), 'at', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(burst / rate) + 1000)
end
return 0
"""


class RedisBuckets:
    """Token buckets in Redis, shared by every server and worker that uses the same URL and prefix."""

    def __init__(self, url: Text, timeout: float = REDIS_TIMEOUT) -> None:
        self.url = url
        self.timeout = timeout
        self._clients: Dict[int, object] = {}  # one client per event loop (Sanic workers have their own)
        self._warned = 0.0

    def _script(self):
        import redis.asyncio as aioredis

        loop = id(asyncio.get_running_loop())
        script = self._clients.get(loop)
        if script is None:
            client = aioredis.Redis.from_url(self.url, socket_timeout=self.timeout,
                                             socket_connect_timeout=self.timeout)
            script = self._clients[loop] = client.register_script(_TAKE)
        return script

    async def take(self, buckets: Sequence[Tuple[Text, Rate]]) -> float:
        args: List[object] = [int(time.time() * 1000)]
        for _, rate in buckets:
            args += [rate.per_second / 1000.0, rate.burst]
        try:
            wait_ms = await self._script()(keys=[key for key, _ in buckets], args=args)
        except Exception as error:  # Redis down or slow: admit, say so now and then
            if time.monotonic() - self._warned > 60:
                self._warned = time.monotonic()
                logger.warning("fair share: Redis at %s did not answer (%s); messages are admitted unlimited",
                               self.url.split("@")[-1], type(error).__name__)
            return 0.0
        return float(wait_ms) / 1000.0


class FairShare:
    """The per-address and per-conversation limits of one process."""

    def __init__(self, rates: Dict[str, Optional[Rate]], store, prefix: Text = "fairshare") -> None:
        self.rates = rates
        self.store = store
        self.prefix = prefix

    @classmethod
    def from_env(cls, env: Optional[Dict[str, str]] = None) -> "FairShare":
        env = dict(os.environ if env is None else env)
        url = env.get(REDIS_ENV, "").strip()
        store = RedisBuckets(url) if url else MemoryBuckets()
        return cls(rates_from_env(env), store, env.get(PREFIX_ENV, "").strip() or "fairshare")

    async def admit(self, client: Text, conversation: Text) -> float:
        """0.0 if the message may be handled (a token is taken from both buckets), else the seconds
        until it would be."""
        buckets = [(f"{self.prefix}:{kind}:{_digest(value)}", rate)
                   for kind, value in (("address", client), ("conversation", conversation))
                   for rate in [self.rates.get(kind)] if rate is not None]
        if not buckets:
            return 0.0
        return await self.store.take(buckets)


_shared: Optional[FairShare] = None


def shared() -> FairShare:
    """The process's limits, made from the environment on first use."""
    global _shared
    if _shared is None:
        _shared = FairShare.from_env()
    return _shared


async def admit(client: Text, conversation: Text) -> float:
    """The one call for channels: 0.0 if the message may be handled, else the seconds to wait (see the
    module's docstring), returned after a pause of up to :data:`TARPIT_SECONDS`."""
    wait = await shared().admit(client, conversation)
    if wait:
        await asyncio.sleep(min(wait, TARPIT_SECONDS))
    return wait
