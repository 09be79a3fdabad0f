"""Authenticating the API's bearer credentials (PATs and exchanged access tokens).

This runs on every API request, so its cost is the product's cost. With
Redis, a token this process has verified is served from its cache
(``tokens.authcache``) with neither a query nor, usually, a Redis round
trip: the request limit is taken from a lease of the token's allowance in
Redis and the use is counted in memory (``usage.usage_count``). The token's
effective state is still evaluated on every request (``rules.evaluate``), so
expiry is exact to the second.

The credential is loaded and its context built by ``tokens.verification``,
as on every other surface. A token not in the cache costs one query
(``tokens.lookup``) and, usually, no Redis round trip: its first request is
counted with its next lease (``request_admit``). The failure limit guards
lookups: an address this process knows is over it is refused before any
lookup, and a token already verified here is not refused because its address
also sent bad ones. A failure costs one round trip, to count it.
Without Redis, or while it is unreachable, every request loads the token and
the limits are kept per process (and fail open).
"""

import hashlib
import logging
import threading
from dataclasses import dataclass
from datetime import datetime

import redis
from django.conf import settings
from django.utils import timezone

from core.errors import InvalidToken, RateLimited
from core.ratelimit import rate_limit_count, rate_limit_enforce, rate_limit_hit, rate_limit_key
from core.redis import redis_client, redis_script
from tokens import authcache, keys, usage
from tokens.rules import evaluate
from tokens.signing import api_audience, looks_like_jwt
from tokens.verification import Loaded, TokenContext, context_build, credential_load

logger = logging.getLogger(__name__)

WINDOW = 60  # seconds, for both the failure and the request limits
ADDRESS_BLOCKED = "Too many failed authentications from this address."


@dataclass(frozen=True)
class Credential:
    """A credential of the right shape: a PAT or an access token (JWT). Its
    checksum or signature is checked only when it must be looked up: a cache
    hit proves it is the very string that was verified before."""

    value: str
    cache_key: str
    is_jwt: bool = False


def _parse(value: str) -> Credential | None:
    if value.startswith(keys.PREFIX):
        if len(value) != keys.TOKEN_LENGTH or not value.isascii():
            return None
        return Credential(value, keys.digest(value))
    if looks_like_jwt(value) and value.isascii():
        return Credential(value, "jwt:" + hashlib.sha256(value.encode("ascii")).hexdigest(), is_jwt=True)
    return None


def bearer_authenticate(
    value: str, *, ip: str | None, now: datetime | None = None, also_audience: str | None = None
) -> TokenContext:
    """Return the context of a usable bearer credential, or raise InvalidToken
    (any failure, alike) or RateLimited (the address or the token is over its limit).
    An access token must be for this service's API, or for ``also_audience`` (the
    gateway accepts those exchanged for the application it guards)."""
    now = now or timezone.now()
    credential = _parse(value)
    audiences = [api_audience(), also_audience] if also_audience else [api_audience()]
    # Without a subscribed listener (Redis down, or not yet connected) the
    # cache cannot be used: go straight to the path that needs no Redis.
    if credential is not None and redis_client() is not None and authcache.cache_trusted():
        try:
            return _authenticate_with_cache(credential, ip=ip, now=now, audiences=audiences)
        except redis.RedisError:
            logger.warning("Redis unavailable: authenticating without the token cache")
    return _authenticate_without_cache(credential, ip=ip, now=now, audiences=audiences)


def _refuse(ip: str | None) -> InvalidToken:
    rate_limit_hit(f"auth-failures:{ip}", limit=settings.AUTH_FAILURES_PER_MINUTE_PER_IP, window=WINDOW)
    return InvalidToken()


def _check_address(ip: str | None) -> None:
    # Brute-force protection: an address with too many failures is turned away
    # before any lookup; valid tokens from other addresses are unaffected.
    if rate_limit_count(f"auth-failures:{ip}", window=WINDOW) >= settings.AUTH_FAILURES_PER_MINUTE_PER_IP:
        raise RateLimited(ADDRESS_BLOCKED, retry_after=WINDOW)


def _load(credential: Credential | None, now: datetime, audiences: list[str]) -> Loaded | None:
    return credential_load(credential.value, audience=audiences, now=now) if credential else None


def _for_audiences(entry: authcache.Entry | None, audiences: list[str]) -> authcache.Entry | None:
    """The cached entry, if it is not an access token for another audience than
    these (the cache is shared by the API and the gateway, which accepts more)."""
    if entry is None or entry.claims is None:
        return entry
    aud = entry.claims.get("aud")
    return entry if set(aud if isinstance(aud, list) else [aud]) & set(audiences) else None


def _authenticate_without_cache(
    credential: Credential | None, *, ip: str | None, now: datetime, audiences: list[str]
) -> TokenContext:
    _check_address(ip)
    loaded = _load(credential, now, audiences)
    context = context_build(loaded, evaluate(loaded.facts, now), now, ip=ip) if loaded else None
    if context is None:
        raise _refuse(ip)
    rate_limit_enforce(
        f"token-requests:{context.token.pk}",
        limit=context.token.tenant.token_requests_per_minute,
        window=WINDOW,
        what="requests with this token",
    )
    if loaded.claims is None:
        usage.usage_record(context.token, ip=ip, now=now)  # uses are counted for PATs
    return context


def _authenticate_with_cache(
    credential: Credential, *, ip: str | None, now: datetime, audiences: list[str]
) -> TokenContext:
    entry = _for_audiences(authcache.cache_lookup(credential.cache_key), audiences)
    context = context_build(entry.loaded(), entry.state(now), now, ip=ip) if entry else None
    if context is None:  # not cached, or unusable on old facts: reload, never refuse on those
        _check_address_known_blocked(ip, now)
        mark = authcache.cache_mark()
        loaded = _load(credential, now, audiences)
        if loaded is None:
            raise _refuse_counted(ip, now)
        entry = authcache.cache_store(credential.cache_key, loaded, mark)
        context = context_build(loaded, entry.state(now), now, ip=ip)
        if context is None:
            raise _refuse_counted(ip, now)
    limit = context.token.tenant.token_requests_per_minute
    if not request_admit(context.token.pk, limit=limit, now=now):
        raise RateLimited(
            f"Too many requests with this token: at most {limit} per {WINDOW} seconds.",
            retry_after=_rest_of_window(now),
        )
    if entry.claims is None:
        usage.usage_count(context.token.pk, ip=ip, now=now)  # uses are counted for PATs
    return context  # its token and rows are instances of its own, which the request may change


# ---------------------------------------------------------------- failures per address

# Addresses this process knows are over their failure limit, with the window
# they are blocked in: checked before a lookup, without a round trip. Each
# failure is counted in Redis, and its reply tells the process when the
# address crosses the limit, so an address blocked by other processes costs
# each process at most one more lookup a window.
_blocked: dict[str | None, int] = {}
BLOCKED_REMEMBERED = 10_000


def _rest_of_window(now: datetime) -> int:
    return WINDOW - int(now.timestamp()) % WINDOW


def _check_address_known_blocked(ip: str | None, now: datetime) -> None:
    if _blocked.get(ip) == int(now.timestamp()) // WINDOW:
        raise RateLimited(ADDRESS_BLOCKED, retry_after=_rest_of_window(now))


def _remember_if_blocked(ip: str | None, failures: int, now: datetime) -> None:
    if failures >= settings.AUTH_FAILURES_PER_MINUTE_PER_IP:
        window = int(now.timestamp()) // WINDOW
        if len(_blocked) >= BLOCKED_REMEMBERED:
            for old in [old for old, blocked in _blocked.items() if blocked < window]:
                del _blocked[old]
        _blocked[ip] = window


def _refuse_counted(ip: str | None, now: datetime) -> InvalidToken:
    """Count a failure in one round trip and remember the address if it is now over its limit."""
    key = rate_limit_key(f"auth-failures:{ip}", window=WINDOW)  # the key the path without the cache counts in
    pipe = redis_client().pipeline(transaction=True)
    pipe.incr(key)
    pipe.expire(key, WINDOW + 1, nx=True)
    _remember_if_blocked(ip, int(pipe.execute()[0]), now)
    return InvalidToken()


# ---------------------------------------------------------------- request limits


# (token id, window, limit) -> requests this process may still serve; a changed limit starts afresh.
_leases: dict[tuple[int, int, int], int] = {}
# The same keys -> requests served before they were counted in Redis (the window's first, at most one).
_unsettled: dict[tuple[int, int, int], int] = {}
# The keys whose first request was served uncounted since the listener last took leases ahead.
_uncounted: list[tuple[int, int, int]] = []
_leases_lock = threading.Lock()
_leases_window = 0


def request_admit(token_id: int, *, limit: int, now: datetime) -> bool:
    """Take one request from the token's allowance for the current minute.

    The allowance is counted in Redis, but a process takes it in leases of up
    to 1% (at least 1, at most 1,000 requests) and serves them from memory, so
    most requests need no round trip. A token's first request in a process and
    window is served before it is counted: so a token this process has not
    seen, an integration calling now and then, costs no round trip at all. It
    is counted, with the token's first lease, by the cache's listener within a
    second (``leases_take_ahead``), or by its next request if that comes
    sooner. A client spreading requests over P processes may so get up to P
    requests a window more than the limit, and may be refused up to P leases
    early (a process may leave part of its last lease unused).
    """
    window = int(now.timestamp()) // WINDOW
    key = (token_id, window, limit)
    with _leases_lock:
        _past_windows_drop(window)
        if _leases.get(key, 0) > 0:
            _leases[key] -= 1
            return True
        if key not in _unsettled:
            _unsettled[key] = 1
            _uncounted.append(key)
            return True
        owed, _unsettled[key] = _unsettled[key], 0
    granted = _lease_granted(key, _leases_take([(key, owed)])[0])
    with _leases_lock:
        if granted == 0:
            return False
        _leases[key] = _leases.get(key, 0) + granted - 1
    return True


def _lease_size(limit: int) -> int:
    return max(1, min(limit // 100, 1000))


# Adds ARGV[i] to the count KEYS[i], starts the window's expiry of a count that
# has none, and returns the counts: one command for any number of tokens.
_LEASES_TAKE = redis_script("""
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('INCRBY', key, ARGV[i])
  redis.call('EXPIRE', key, ARGV[#KEYS + 1], 'NX')
end
return counts
""")


def _leases_take(due: list[tuple[tuple[int, int, int], int]]) -> list[int]:
    """Count each key's ``owed`` requests and take a lease for it, in one round trip;
    the window's counts after."""
    buckets = [rate_limit_key(f"token-requests:{token_id}", window=WINDOW) for (token_id, _, _), _ in due]
    amounts = [_lease_size(limit) + owed for (_, _, limit), owed in due]
    return [int(count) for count in _LEASES_TAKE(keys=buckets, args=[*amounts, WINDOW + 1], client=redis_client())]


def _lease_granted(key: tuple[int, int, int], taken: int) -> int:
    """How much of the lease the window's count ``taken`` (after taking it) leaves this process."""
    lease, limit = _lease_size(key[2]), key[2]
    return max(0, min(lease, limit - (taken - lease)))


def leases_take_ahead() -> None:
    """Count the first requests this process served uncounted (see
    ``request_admit``) and take those tokens' first leases, in one round trip,
    so that their next requests need none. Called by the cache's listener."""
    window = int(timezone.now().timestamp()) // WINDOW
    with _leases_lock:
        keys = _uncounted.copy()
        _uncounted.clear()
        due = [(key, _unsettled[key]) for key in keys if key[1] == window and key in _unsettled]
        due = [(key, owed) for key, owed in due if owed and not _leases.get(key)]
        for key, _ in due:
            _unsettled[key] = 0
    if not due:
        return
    try:
        taken = _leases_take(due)
    except redis.RedisError:
        with _leases_lock:  # their next requests count them, as without this
            for key, owed in due:
                if key in _unsettled:
                    _unsettled[key] += owed
        return
    window = int(timezone.now().timestamp()) // WINDOW
    with _leases_lock:
        for (key, _), count in zip(due, taken, strict=True):
            if key[1] == window:  # not a window that ended meanwhile
                _leases[key] = _leases.get(key, 0) + _lease_granted(key, count)


authcache.on_tick(leases_take_ahead)


def _past_windows_drop(window: int) -> None:
    """Once a window, forget the leases of the ones before (the caller holds the lock)."""
    global _leases_window
    if window > _leases_window:
        for table in (_leases, _unsettled):
            for old in [old for old in table if old[1] < window]:
                del table[old]
        _uncounted[:] = [key for key in _uncounted if key[1] >= window]  # a listener that stopped leaves them
        _leases_window = window
