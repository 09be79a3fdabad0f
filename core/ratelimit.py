"""Fixed-window rate limits in the cache: shared by every process when the
cache is Redis, per process otherwise (the embedded default).

If the cache is unreachable (Redis down) the limits fail open: requests are
served (authentication does not depend on the cache) and a warning is logged.
"""

import logging
import time
from dataclasses import dataclass

from django.core.cache import cache

from core.errors import RateLimited

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    count: int
    retry_after: int


def _bucket(key: str, window: int, now: int) -> str:
    return f"ratelimit:{key}:{now // window}"


def rate_limit_key(key: str, *, window: int) -> str:
    """The Redis key of ``key``'s current window, for callers that count in a
    script of their own (the cache stores counts as plain integers)."""
    return cache.make_key(_bucket(key, window, int(time.time())))


def rate_limit_hit(key: str, *, limit: int, window: int) -> Verdict:
    """Count one event for ``key`` in the current window of ``window`` seconds."""
    now = int(time.time())
    bucket = _bucket(key, window, now)
    try:
        if cache.add(bucket, 1, timeout=window + 1):
            count = 1
        else:
            try:
                count = cache.incr(bucket)
            except ValueError:  # the window ended between add() and incr()
                cache.add(bucket, 1, timeout=window + 1)
                count = 1
    except Exception:  # noqa: BLE001 - any cache failure: fail open, never 500
        logger.warning("rate limit cache unavailable; not limiting %s", key.split(":")[0])
        return Verdict(True, 0, 0)
    return Verdict(count <= limit, count, window - now % window)


def rate_limit_refund(key: str, *, window: int) -> None:
    """Take back one event counted by rate_limit_hit, for an attempt that turned
    out not to count (a successful sign-in). Counting first and refunding after
    keeps the limit exact under concurrent attempts. If the window has rolled
    over meanwhile, the new window's count drops by one: one attempt more, never
    a limit lifted."""
    try:
        cache.decr(_bucket(key, window, int(time.time())))
    except ValueError:  # no count in this window: nothing to take back
        pass
    except Exception:  # noqa: BLE001 - any cache failure: fail open, never 500
        logger.warning("rate limit cache unavailable; not refunding %s", key.split(":")[0])


def rate_limit_count(key: str, *, window: int) -> int:
    """Return how many events ``key`` has in the current window (0 if the cache is down)."""
    now = int(time.time())
    try:
        return int(cache.get(_bucket(key, window, now)) or 0)
    except Exception:  # noqa: BLE001 - fail open
        return 0


def rate_limit_enforce(key: str, *, limit: int, window: int, what: str) -> None:
    """Raise RateLimited (429 with Retry-After) past ``limit`` events per window."""
    verdict = rate_limit_hit(key, limit=limit, window=window)
    if not verdict.allowed:
        raise RateLimited(f"Too many {what}: at most {limit} per {window} seconds.", retry_after=verdict.retry_after)
