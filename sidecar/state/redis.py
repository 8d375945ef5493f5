"""Budget counts in Redis: one budget for every replica of the sidecar.

Each budget key (``sidecar.core.budget.budget_key``) is a hash with the fields ``spent`` and
``reserved`` (integer micro-dollars). Two Lua scripts, registered once and run with EVALSHA
(redis-py loads them again after a Redis restart), make the changes atomic across replicas:

* RESERVE (KEYS: the claims' keys; ARGV: amount, then each claim's limit and TTL in whole
  seconds): if spent + reserved + amount goes over any key's limit, nothing changes; otherwise
  ``reserved`` grows by amount on every key and each key's TTL is extended to its window's end
  (never shortened). Answers {granted, spent, reserved, ...} per key.
* SETTLE: ``spent`` grows by the call's actual cost, ``reserved`` shrinks by the reservation
  (never below 0); the TTL is kept. A key that expired meanwhile (its window is over) is not
  created again, so nothing is left without a TTL.

A script touches several keys, so the keys must live on one node: a plain Redis (or a primary
with replicas), not Redis Cluster.

Any failure to talk to Redis (refused, reset, timed out after ``timeout`` seconds, or a Redis
error such as READONLY or OOM) raises ``StoreUnavailable`` with a short reason; credentials in
the URL never appear in it. redis-py does not retry (a retried RESERVE could count twice).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from sidecar.state import Claim, Counts, Reservation, Reserved, StoreUnavailable

RESERVE = """
local amount = tonumber(ARGV[1])
local out = {1}
for i, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'spent', 'reserved')
  local spent, reserved = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  out[2 * i], out[2 * i + 1] = spent, reserved
  if spent + reserved + amount > tonumber(ARGV[2 * i]) then out[1] = 0 end
end
if out[1] == 1 then
  for i, key in ipairs(KEYS) do
    out[2 * i + 1] = redis.call('HINCRBY', key, 'reserved', amount)
    local ttl = tonumber(ARGV[2 * i + 1])
    if redis.call('TTL', key) < ttl then redis.call('EXPIRE', key, ttl) end
  end
end
return out
"""

SETTLE = """
local actual, amount = tonumber(ARGV[1]), tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('HINCRBY', key, 'spent', actual)
    if redis.call('HINCRBY', key, 'reserved', -amount) < 0 then
      redis.call('HSET', key, 'reserved', 0)
    end
  end
end
return 1
"""

MAX_REASON = 200


def connect(url: str, *, timeout: float, max_connections: int) -> Redis:
    """An asyncio client for the sidecar's stores: short timeouts (``timeout`` for an answer;
    at least 1 s to connect, so a burst opening many connections on a busy host is not taken
    for an outage), no retries (a retried script could count twice), and a blocking pool so a
    burst waits for a connection (up to 4x ``timeout``, at least 1 s) instead of failing as if
    Redis were down."""
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=max(1.0, 4 * timeout),
        socket_timeout=timeout, socket_connect_timeout=max(1.0, timeout),
        retry_on_timeout=False)
    return Redis.from_pool(pool)


class RedisStore:
    """Budget counts shared through Redis at ``url`` (see the module docstring); ``name`` is
    ``"redis"``. ``timeout`` bounds connecting and each answer, in seconds. At most
    ``max_connections`` calls talk to Redis at once; the others wait for a connection, up to
    4 x ``timeout`` (at least 1 s), then count as unavailable too."""

    name: str = "redis"

    def __init__(self, url: str, *, timeout: float = 1.0, max_connections: int = 50) -> None:
        self.url = url
        self.where = redact(url)
        self._redis: Redis = connect(url, timeout=timeout, max_connections=max_connections)
        self._reserve = self._redis.register_script(RESERVE)
        self._settle = self._redis.register_script(SETTLE)

    async def reserve(self, claims: Sequence[Claim], amount: int) -> Reserved:
        if amount < 0:
            raise ValueError(f"a reservation cannot be negative: {amount}")
        keys = [c.key for c in claims]
        args: list[int] = [amount]
        for claim in claims:
            args += [claim.limit, max(1, math.ceil(claim.ttl))]
        try:
            answer = await self._reserve(keys=keys, args=args)
        except (RedisError, OSError) as e:
            raise self._unavailable(e) from None
        values = [int(v) for v in answer]
        counts = {key: Counts(spent=values[2 * i + 1], reserved=values[2 * i + 2])
                  for i, key in enumerate(keys)}
        granted = Reservation(tuple(claims), amount, self.name) if values[0] == 1 else None
        return Reserved(granted, counts)

    async def settle(self, reservation: Reservation, actual: int) -> None:
        if actual < 0:
            raise ValueError(f"a call cannot cost less than nothing: {actual}")
        try:
            await self._settle(keys=[c.key for c in reservation.claims],
                               args=[actual, reservation.amount])
        except (RedisError, OSError) as e:
            raise self._unavailable(e) from None

    async def usage(self, keys: Sequence[str]) -> dict[str, Counts]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(key, ["spent", "reserved"])
                answers = await pipe.execute()
        except (RedisError, OSError) as e:
            raise self._unavailable(e) from None
        return {key: Counts(spent=int(spent or 0), reserved=int(reserved or 0))
                for key, (spent, reserved) in zip(keys, answers, strict=True)}

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless Redis answers."""
        try:
            await self._redis.ping()
        except (RedisError, OSError) as e:
            raise self._unavailable(e) from None

    async def close(self) -> None:
        await self._redis.aclose()

    def _unavailable(self, error: BaseException) -> StoreUnavailable:
        text = " ".join(str(error).split()) or "no detail"
        reason = f"{type(error).__name__}: {text}"
        return StoreUnavailable(scrub(reason, self.url)[:MAX_REASON])


def redact(url: str) -> str:
    """``url`` with its user and password (and a ``password=`` query value) replaced by ***."""
    out = re.sub(r"(?<=//)[^/@?#]*@", "***@", url, count=1)
    return re.sub(r"(?i)(password=)[^&#]*", r"\1***", out)


def scrub(text: str, url: str) -> str:
    """``text`` (an error message) without the URL's password, in whichever form it appears."""
    text = text.replace(url, redact(url))
    try:
        parts = urlsplit(url)
        secrets = [s for s in (parts.password,) if s]
        secrets += re.findall(r"(?i)password=([^&#]+)", parts.query)
    except ValueError:
        return text
    for secret in sorted({*secrets, *(unquote(s) for s in secrets)}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
