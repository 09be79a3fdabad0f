"""Fixed-window rate limits in the cache: shared by every process when the
cache is Redis, per process otherwise (the embedded default)."""

import time
from dataclasses import dataclass

from django.core.cache import cache

from iam.exceptions import RateLimited


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    count: int
    retry_after: int


def rate_limit_hit(key: str, *, limit: int, window: int) -> Verdict:
    """Count one event for ``key`` in the current window of ``window`` seconds."""
    now = int(time.time())
    bucket = f"ratelimit:{key}:{now // window}"
    if cache.add(bucket, 1, timeout=window + 1):
        count = 1
    else:
        try:
            count = cache.incr(bucket)
        except ValueError:  # the window ended between add() and incr()
            cache.add(bucket, 1, timeout=window + 1)
            count = 1
    return Verdict(count <= limit, count, window - now % window)


def rate_limit_enforce(key: str, *, limit: int, window: int, what: str) -> None:
    """Raise RateLimited (429 with Retry-After) past ``limit`` events per window."""
    verdict = rate_limit_hit(key, limit=limit, window=window)
    if not verdict.allowed:
        raise RateLimited(f"Too many {what}: at most {limit} per {window} seconds.", retry_after=verdict.retry_after)
