"""Which Redis the limits keys belong to: a server that comes back with keys older than
the spend it saw (restored from a snapshot taken before its crash, a replica promoted
while it lagged) must not be trusted with them.

Redis gives each process start a new `run_id`. The first connection to a server records
its run_id in one key, GENERATION_KEY, with a generation number; a connection that finds
another run_id recorded there bumps the generation. The limits keys carry the generation
in their names (redis_calls.team_prefix), so after a restart with data, or a failover,
every counter is new: unseeded, rebuilt from the ledger (which holds every finished
request) as when Redis lost its keys. The keys of the older generation are left to
their TTLs. Generation 0 keeps the names keys had before generations existed, so a
gateway upgraded in place reads the counters its predecessor wrote.

Every new connection asks (the fast one in resp.py, redis-py's by its connect hook), and
a connection that finds the generation changed fails its first call as not sent: a
command made before it knew would name the older keys. The backend asks again every few
seconds on the connections it keeps (redis_backend.py): a flush that another process's
reconnection re-recorded, or a server swapped behind a proxy, is followed within that.
A Redis that refuses the script (an ACL without INFO) keeps the generation as it was,
with a warning: a restore then goes unnoticed, as before generations existed. Any other
error (still loading its data after a restart, a read-only replica) fails the
connection: it is tried again later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

log = logging.getLogger("gateway.limits")


class GenerationChanged(RedisConnectionError):
    """A redis-py connection found a new generation: the call that made it is not sent."""


GENERATION_KEY = "gw:generation"  # no TTL: it outlives every key it names

# KEYS: the generation key. ARGV: the generation the caller's process knows (0 when it
# knows none). Returns the generation this server's limits keys are of. Recorded under
# another run_id: the next one. Missing (a first use; a Redis that lost everything, or
# was flushed, its keys gone too): the caller's, so that a process reconnecting after a
# flush does not part from the others, whose connections stay, on another generation.
# -1: the server names no run_id (not Redis itself): nothing to check.
GENERATION = """
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
if not run then return -1 end
local rec = redis.call('HMGET', KEYS[1], 'run', 'gen')
if rec[1] == run then return tonumber(rec[2]) end
local gen = tonumber(ARGV[1])
if rec[1] then gen = tonumber(rec[2]) + 1 end
redis.call('HSET', KEYS[1], 'run', run, 'gen', gen)
return gen
"""


# How a Redis says it will never run the check: an ACL refusing EVAL or INFO inside the
# script (Redis 7.0: "ERR The user executing the script can't run this command ...";
# later versions and EVAL itself: "NOPERM ..."), or a command renamed away.
_NEVER = ("NOPERM", "can't run this command", "no permissions", "nknown Redis command")


def never_checkable(error: Exception) -> bool:
    """Whether an error reply says the check can never run here (see _NEVER)."""
    said = str(error)
    return any(words in said for words in _NEVER)


def _said(reply: Any) -> str:
    if isinstance(reply, Exception):
        return f"{type(reply).__name__}: {reply}"
    return "the server's INFO names no run_id"


class Generation:
    """The generation of the limits keys, as this process's connections last learned it.

    `greeted` takes the `greeting`'s reply on each new connection: whether commands made
    before it still name the right keys. `on_change` runs when the generation changes."""

    def __init__(self, on_change: Callable[[int], None] = lambda generation: None) -> None:
        self.value = 0  # until a connection answers: commands made then name generation 0
        self.known = False  # whether a connection has answered
        self._refused = False  # warned once that this Redis refuses the script
        self.on_change = on_change

    def greeting(self) -> tuple[str, ...]:
        """The greeting's command: the script, with the generation this process knows."""
        return ("EVAL", GENERATION, "1", GENERATION_KEY, str(self.value))

    def greeted(self, reply: Any) -> bool:
        """Raises ConnectionError for an error reply other than a refusal for good: a Redis
        still loading its data (LOADING), a replica (READONLY), a busy one cannot say which
        keys are current yet, so the connection is not used (taking the error as a
        refusal would keep the generation a restored dataset has moved on from)."""
        if isinstance(reply, Exception) and not never_checkable(reply):
            raise ConnectionError(f"Redis cannot run the generation check yet ({reply})")
        if isinstance(reply, Exception) or reply == -1:  # never checkable here
            if not self._refused:
                self._refused = True
                log.warning(
                    "limits: Redis refused the generation check; a Redis restored from an "
                    "older snapshot will not be noticed",
                    extra={"fields": {"error": _said(reply)}},
                )
            return True
        generation, was_known = int(reply), self.known
        self.known = True
        if generation == self.value:
            return True
        self.value = generation
        if was_known:
            log.warning(
                "limits: Redis is a new server with older keys (restarted, restored or failed "
                "over): counters are rebuilt from the ledger",
                extra={"fields": {"generation": generation}},
            )
        self.on_change(generation)
        return False  # commands made before named the keys of another generation

    async def redis_py_connect(self, connection: AbstractConnection) -> None:
        """redis-py's connect hook: its usual setup, then the greeting. A changed
        generation fails the call that connected (raised: redis-py disconnects)."""
        await connection.on_connect()
        await connection.send_command(*self.greeting())
        try:
            reply: Any = await connection.read_response()
        except RedisError as error:
            if isinstance(error, RedisConnectionError):
                raise
            reply = error
        try:
            same = self.greeted(reply)
        except ConnectionError as error:
            raise RedisConnectionError(str(error)) from error
        if not same:
            raise GenerationChanged("Redis is a new server: the call was not sent")
