"""A Redis lock store whose every change to a lock is one atomic Redis operation.

Several Rasa servers sharing one conversation store must never handle two messages of the same
conversation at once: the second would load the tracker before the first saved it, and one of the
two turns would be lost. Rasa serialises them with a ticket lock kept in the lock store. Rasa 3.6's
``RedisLockStore`` reads the lock, changes it in Python and writes it back (``issue_ticket``,
``finish_serving``, ``update_lock``, ``cleanup``): two servers issuing a ticket at the same moment
both read the same lock, get the same ticket number (or one overwrites the other's ticket), and
both process their message at once (RasaHQ/rasa issue 9213; the fix, PR 11428, went to Rasa Pro
only). Measured here: 4/40 and 8/40 turns lost with two servers and simultaneous messages.

:class:`AtomicRedisLockStore` keeps Rasa's lock format (one JSON ``TicketLock`` per conversation,
so ``get_lock`` and the waiting loop of ``LockStore.lock`` are Rasa's own) and makes each
read-modify-write a Lua script, which Redis runs atomically:

* ticket numbers come from ``INCR`` on a per-conversation counter, so they are unique and
  increasing even across the lock's deletion (a waiter holding an old number can never be mistaken
  for a new holder); the ticket is appended to the lock in the same script, so the queue order is
  the issue order;
* finishing a ticket and deleting the lock when nobody waits (``cleanup``) is one script: the stock
  ``cleanup`` could delete a lock in which another server had just queued a ticket;
* every lock key expires ``lock_lifetime`` after its last change, so the lock of a server killed
  mid-turn disappears by itself (as its ticket would), and the counter a while later.

Configured in ``endpoints.postgres.yml``::

    lock_store:
      type: rasa_ext.lock_store.AtomicRedisLockStore
      url: ${REDIS_HOST}
      port: ${REDIS_PORT}
      db: 1
      key_prefix: clinic        # optional, alphanumeric

Pinned to Rasa 3.6.21's ``LockStore`` interface (``issue_ticket``, ``update_lock``,
``finish_serving``, ``cleanup``); the test suite checks the version.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional, Text

from rasa.core.lock_store import DEFAULT_REDIS_LOCK_STORE_KEY_PREFIX, LOCK_LIFETIME, LockError, RedisLockStore
from rasa.utils.endpoints import EndpointConfig

logger = logging.getLogger(__name__)

# How long the ticket counter outlives the last ticket issued (in lock lifetimes). While the lock of
# a conversation can still exist, its counter must exist too, or numbers would start again at 1.
COUNTER_LIFETIMES = 10

# Tickets are JSON strings inside the lock's JSON, exactly as rasa.core.lock.TicketLock.dumps writes
# them. A ticket has expired when now > expires (Ticket.has_expired). The lock key expires with its
# last ticket. KEYS[1] = lock, ARGV[1] = now; returns the tickets still valid.
_KEEP_VALID = """
local function valid_tickets(raw, now, drop)
  local kept = {}
  if raw then
    for _, serialised in ipairs(cjson.decode(raw)['tickets']) do
      local ticket = cjson.decode(serialised)
      if tonumber(ticket['expires']) >= now and ticket['number'] ~= drop then
        table.insert(kept, serialised)
      end
    end
  end
  return kept
end
local function save(key, conversation_id, tickets, ttl_ms)
  if #tickets == 0 then
    redis.call('DEL', key)
  else
    redis.call('SET', key, cjson.encode({conversation_id = conversation_id, tickets = tickets}),
               'PX', ttl_ms)
  end
end
"""

# KEYS: lock, counter. ARGV: now, expires, conversation id, lock ttl ms, counter ttl ms.
_ISSUE = _KEEP_VALID + """
local number = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
local tickets = valid_tickets(redis.call('GET', KEYS[1]), tonumber(ARGV[1]), nil)
table.insert(tickets, '{"number": ' .. string.format('%d', number) .. ', "expires": ' .. ARGV[2] .. '}')
save(KEYS[1], ARGV[3], tickets, ARGV[4])
return number
"""

# KEYS: lock. ARGV: now, conversation id, lock ttl ms, ticket number to remove (or '').
# Removes the expired tickets (and the given one); deletes the lock when no ticket is left.
_PRUNE = _KEEP_VALID + """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local drop = nil
if ARGV[4] ~= '' then drop = tonumber(ARGV[4]) end
local tickets = valid_tickets(raw, tonumber(ARGV[1]), drop)
save(KEYS[1], ARGV[2], tickets, ARGV[3])
return #tickets
"""


class AtomicRedisLockStore(RedisLockStore):
    """``RedisLockStore`` with atomic ticket issuing, lock updates and clean-up (see the module)."""

    def __init__(self, endpoint_config: Optional[EndpointConfig] = None, host: Text = "localhost",
                 lock_lifetime: float = LOCK_LIFETIME, **kwargs: Any) -> None:
        """Connects to Redis.

        Args:
            endpoint_config: the ``lock_store`` section of the endpoints file (Rasa passes it for a
                lock store given by module path): ``url`` is the host, the other keys are
                ``RedisLockStore``'s arguments (``port``, ``db``, ``password``, ``key_prefix``, ...).
            host: the Redis host when no ``endpoint_config`` is given.
            lock_lifetime: how long an untouched lock key is kept (Rasa's ticket lifetime).
            **kwargs: ``RedisLockStore``'s arguments when no ``endpoint_config`` is given.
        """
        if endpoint_config is not None:
            host = endpoint_config.url or host
            kwargs = {**endpoint_config.kwargs, **kwargs}
        super().__init__(host=host, **kwargs)
        self.lock_lifetime = float(lock_lifetime)
        # "<prefix>:ticket:<id>" beside Rasa's "<prefix>:lock:<id>": no conversation id can name another
        # conversation's counter (a sender "x:ticket" would, if the counter were "<prefix>:lock:x:ticket").
        self.ticket_prefix = self.key_prefix[:-len(DEFAULT_REDIS_LOCK_STORE_KEY_PREFIX)] + "ticket:"
        self._issue = self.red.register_script(_ISSUE)
        self._prune = self.red.register_script(_PRUNE)

    def _ttl_ms(self, lifetime: float) -> int:
        # The lock key outlives its newest ticket a little, so that expired tickets are pruned by
        # the scripts (as Rasa's TicketLock would) rather than vanishing with the key mid-check.
        return int(max(lifetime, self.lock_lifetime) * 1000) + 1000

    def issue_ticket(self, conversation_id: Text, lock_lifetime: float = LOCK_LIFETIME) -> int:
        """Issues the next ticket of ``conversation_id``'s lock, creating the lock if needed."""
        now = time.time()
        try:
            return int(self._issue(
                keys=[self.key_prefix + conversation_id, self.ticket_prefix + conversation_id],
                args=[repr(now), repr(now + lock_lifetime), conversation_id, self._ttl_ms(lock_lifetime),
                      int(COUNTER_LIFETIMES * max(lock_lifetime, self.lock_lifetime) * 1000)]))
        except Exception as error:  # Rasa's LockStore.issue_ticket wraps every failure the same way
            raise LockError(f"Error while acquiring lock. Error:\n{error}") from error

    def _prune_lock(self, conversation_id: Text, ticket_number: Optional[int]) -> int:
        return int(self._prune(keys=[self.key_prefix + conversation_id],
                               args=[repr(time.time()), conversation_id, self._ttl_ms(self.lock_lifetime),
                                     "" if ticket_number is None else str(ticket_number)]))

    def update_lock(self, conversation_id: Text) -> None:
        """Removes the expired tickets of ``conversation_id``'s lock (deleting it when empty)."""
        self._prune_lock(conversation_id, None)

    def finish_serving(self, conversation_id: Text, ticket_number: int) -> None:
        """Removes ticket ``ticket_number`` (and expired ones) from ``conversation_id``'s lock."""
        self._prune_lock(conversation_id, ticket_number)

    def cleanup(self, conversation_id: Text, ticket_number: int) -> None:
        """Finishes ``ticket_number`` and deletes the lock if nobody waits, in one step."""
        if self._prune_lock(conversation_id, ticket_number) == 0:
            self._log_deletion(conversation_id, True)
