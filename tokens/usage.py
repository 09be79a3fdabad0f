"""Recording token use without a database write on the request path.

With Redis (``REDIS_URL``) a request adds to counters in Redis and a periodic
task (``usage_flush_from_redis``) moves them to the database in batches:
``last_used`` time and IP, and per-token, per-day counts. Each batch is
renamed away from the live counters before it is read, and recorded in the
database in the same transaction as its counts, so a retried flush never
counts twice. If Redis is unreachable, or without it, uses are counted in
process memory and written at most once a minute per token.
"""

import atexit
import logging
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q

from core.redis import redis_client, redis_script
from tokens import notifications
from tokens.models import PersonalAccessToken, TokenUsageDay, UsageBatch

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_pending: dict[int, dict[date, int]] = defaultdict(lambda: defaultdict(int))

COUNTS = "usage:counts:"  # + ISO day: hash token id -> count
LAST = "usage:last"  # hash token id -> "timestamp|ip"
FLUSHING = "usage:flushing:"  # + batch id: a batch being moved to the database
ADDRESSES = "usage:ips:"  # + token id: set of addresses seen


# Adds to a day's counts (KEYS[1]) each token's uses (ARGV: token id, uses, ...): one command for them all.
_COUNTS_ADD = redis_script("for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end")
# Adds ARGV[i] to the set KEYS[i] (a token's addresses); 1 for each address the set did not have.
_ADDRESSES_ADD = redis_script("""
local added = {}
for i, key in ipairs(KEYS) do added[i] = redis.call('SADD', key, ARGV[i]) end
return added
""")

_buffer_lock = threading.Lock()
_buffer: dict[tuple[str, int], int] = defaultdict(int)  # (ISO day, token id) -> uses
_buffer_last: dict[int, tuple[datetime, str | None]] = {}  # token id -> (time, address) of its last use
_buffer_addresses: set[tuple[int, str]] = set()
_buffer_since: float | None = None
# What this process has pushed: a token in steady use then costs only its
# count in a push; its last use is pushed again after
# TOKEN_LAST_USED_WRITE_INTERVAL_SECONDS or from another address, and an
# address it is used from once (Redis keeps the addresses it was told).
_pushed_last: dict[int, tuple[float, str | None]] = {}  # token id -> (time, address) last pushed
_pushed_addresses: set[tuple[int, str]] = set()
PUSHED_REMEMBERED = 100_000  # at least; and twice the tokens the cache holds, so the ones in use stay remembered


def _pushed_limit() -> int:
    return max(PUSHED_REMEMBERED, 2 * settings.TOKEN_CACHE_SIZE)


def usage_count(token_id: int, *, ip: str | None, now: datetime) -> None:
    """Count one use in this process's memory; ``usage_push`` moves it to Redis
    within a second (the cache's listener calls it) and when the process exits."""
    global _buffer_since
    with _buffer_lock:
        _buffer[(now.date().isoformat(), token_id)] += 1
        _buffer_last[token_id] = (now, ip)  # formatted when pushed, not on every request
        if ip:
            _buffer_addresses.add((token_id, ip))
        if _buffer_since is None:
            _buffer_since = time.monotonic()


def usage_push(max_age: float = 0.0) -> bool:
    """Move the buffered counts to Redis in one round trip once the oldest is
    ``max_age`` seconds old, with the uses this process counted in memory while
    Redis was unreachable (``_record_locally``): once Redis is back, they reach
    the database the usual way instead of waiting in memory (and being lost at
    exit). Returns False, keeping them all, if Redis is unreachable."""
    global _buffer_since
    client = redis_client()
    with _buffer_lock:
        due = _buffer_since is not None and time.monotonic() - _buffer_since >= max_age
        if not due and not (client is not None and _pending):
            return True
        counts, last, addresses = dict(_buffer), _last_due(_buffer_last), sorted(_buffer_addresses - _pushed_addresses)
        _buffer.clear(), _buffer_last.clear(), _buffer_addresses.clear()
        _buffer_since = None
    held = _take_pending() if client is not None else {}
    try:
        if client is None:
            raise redis.ConnectionError("no Redis configured")
        pipe = client.pipeline(transaction=True)  # all or nothing, so a retry cannot count twice
        days: dict[str, list] = defaultdict(list)
        for (day, token_id), uses in [*counts.items(), *held.items()]:
            days[day] += (token_id, uses)
        for day, uses in days.items():
            _COUNTS_ADD(keys=[f"{COUNTS}{day}"], args=uses, client=pipe)
        if last:
            pipe.hset(LAST, mapping={token_id: f"{at.timestamp()}|{ip or ''}" for token_id, (at, ip) in last.items()})
        if addresses:
            keys = [f"{ADDRESSES}{token_id}" for token_id, _ in addresses]
            _ADDRESSES_ADD(keys=keys, args=[ip for _, ip in addresses], client=pipe)
        results = pipe.execute()
    except redis.RedisError:
        with _buffer_lock:  # put them back for the next attempt
            for key, uses in counts.items():
                _buffer[key] += uses
            for token_id, value in last.items():
                _buffer_last.setdefault(token_id, value)
            _buffer_addresses.update(addresses)
            if counts:
                _buffer_since = _buffer_since or time.monotonic()
        _return_pending(held)
        return False
    limit = _pushed_limit()
    with _buffer_lock:
        if len(_pushed_last) + len(last) > limit:
            _pushed_last.clear()
        _pushed_last.update((token_id, (used_at.timestamp(), ip)) for token_id, (used_at, ip) in last.items())
        if len(_pushed_addresses) + len(addresses) > limit:
            _pushed_addresses.clear()
        _pushed_addresses.update(addresses)
    for (token_id, ip), added in zip(addresses, results[-1] if addresses else [], strict=True):
        if added:
            note_new_address(token_id, ip)
    return True


def usage_pushes_forget() -> None:
    """Forget what was pushed, when this process may have missed a change of
    Redis (its listener reconnected: Redis may have restarted empty)."""
    with _buffer_lock:
        _pushed_last.clear()
        _pushed_addresses.clear()


def _last_due(last: dict[int, tuple[datetime, str | None]]) -> dict[int, tuple[datetime, str | None]]:
    """The last uses to push: of tokens whose last push is older than the interval, or was from another address."""
    interval = settings.TOKEN_LAST_USED_WRITE_INTERVAL_SECONDS
    due = {}
    for token_id, (used_at, ip) in last.items():
        pushed = _pushed_last.get(token_id)
        if pushed is None or pushed[1] != ip or used_at.timestamp() - pushed[0] >= interval:
            due[token_id] = (used_at, ip)
    return due


def _take_pending() -> dict[tuple[str, int], int]:
    """Take the uses counted in memory during a Redis outage, as (ISO day, token id) -> uses."""
    with _lock:
        held = {(day.isoformat(), tid): uses for tid, days in _pending.items() for day, uses in days.items()}
        _pending.clear()
    return held


def _return_pending(held: dict[tuple[str, int], int]) -> None:
    with _lock:
        for (day, tid), uses in held.items():
            _pending[tid][date.fromisoformat(day)] += uses


@atexit.register
def _push_before_exit() -> None:
    """A process that stops keeps none of its counts: to Redis, else to the database."""
    if usage_push():
        return
    with _buffer_lock, _lock:
        for (day, token_id), uses in _buffer.items():
            _pending[token_id][date.fromisoformat(day)] += uses
        _buffer.clear()
    try:
        usage_flush_local()
    except Exception:
        logger.exception("token uses could not be saved on exit")


def usage_record(token: PersonalAccessToken, *, ip: str | None, now: datetime) -> None:
    """Count one authenticated use of ``token``."""
    client = redis_client()
    if client is not None:
        try:
            pipe = client.pipeline(transaction=False)
            pipe.hincrby(f"{COUNTS}{now.date().isoformat()}", token.pk, 1)
            pipe.hset(LAST, token.pk, f"{now.timestamp()}|{ip or ''}")
            if ip:
                pipe.sadd(f"{ADDRESSES}{token.pk}", ip)
            results = pipe.execute()
        except redis.RedisError:
            logger.warning("Redis unavailable: counting token use in process memory")
        else:
            if ip and results[2] == 1:
                note_new_address(token.pk, ip)
            return
    _record_locally(token, ip=ip, now=now)


def note_new_address(token_id: int, ip: str) -> None:
    try:
        notifications.note_token_address.delay(token_id, ip)
    except Exception:  # noqa: BLE001 - a notice must never fail a request
        logger.warning("could not queue the new-address check for token %s", token_id)


def _record_locally(token: PersonalAccessToken, *, ip: str | None, now: datetime) -> None:
    with _lock:
        _pending[token.pk][now.date()] += 1
    interval = timedelta(seconds=settings.TOKEN_LAST_USED_WRITE_INTERVAL_SECONDS)
    if token.last_used_at is not None and token.last_used_at > now - interval:
        return
    # The filter repeats the check, so of concurrent requests only one writes.
    claimed = (
        PersonalAccessToken.objects.filter(pk=token.pk)
        .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - interval))
        .update(last_used_at=now, last_used_ip=ip)
    )
    token.last_used_at, token.last_used_ip = now, ip
    if claimed:
        usage_flush_local(token.pk)
        if ip and not settings.REDIS_URL:
            notifications.token_address_note(token.pk, ip)


def usage_flush_local(token_id: int | None = None) -> None:
    """Add the counts held in this process's memory (for one token, or all) to the database."""
    with _lock:
        ids = [token_id] if token_id is not None else list(_pending)
        batches = {tid: dict(_pending.pop(tid)) for tid in ids if tid in _pending}
    existing = set(PersonalAccessToken.objects.filter(pk__in=list(batches)).values_list("pk", flat=True))
    for tid, days in batches.items():
        if tid not in existing:
            continue  # the token row is gone (pruned): nothing to count against
        for day, count in days.items():
            add_usage(tid, day, count)


def add_usage(token_id: int, day: date, count: int) -> None:
    """Add ``count`` uses of a token on ``day`` (an atomic increment)."""
    if TokenUsageDay.objects.filter(token_id=token_id, day=day).update(count=F("count") + count):
        return
    try:
        with transaction.atomic():
            TokenUsageDay.objects.create(token_id=token_id, day=day, count=count)
    except IntegrityError:  # created concurrently: add to it
        TokenUsageDay.objects.filter(token_id=token_id, day=day).update(count=F("count") + count)


def usage_flush_from_redis() -> int:
    """Move the counters in Redis to the database; return how many counts moved.

    Safe to run concurrently and to retry: a batch is claimed with RENAME and
    applied with its id in one transaction.
    """
    client = redis_client()
    if client is None:
        return 0
    usage_push()  # this process's own buffered uses first
    for key in list(client.scan_iter(f"{COUNTS}*")) + ([LAST] if client.exists(LAST) else []):
        batch = f"{FLUSHING}{key.removeprefix('usage:')}:{uuid.uuid4().hex}"
        try:
            client.rename(key, batch)
        except redis.ResponseError:  # another flusher took it
            continue
    moved = 0
    for batch in client.scan_iter(f"{FLUSHING}*"):
        values = client.hgetall(batch)
        with transaction.atomic():
            if not UsageBatch.objects.filter(batch_id=batch).exists():
                try:
                    with transaction.atomic():
                        UsageBatch.objects.create(batch_id=batch)
                except IntegrityError:
                    values = {}
                else:
                    moved += _apply_batch(batch, values)
        client.delete(batch)
    return moved


def _apply_batch(batch: str, values: dict[str, str]) -> int:
    existing = set(PersonalAccessToken.objects.filter(pk__in=[int(k) for k in values]).values_list("pk", flat=True))
    if batch.startswith(f"{FLUSHING}counts:"):
        day = date.fromisoformat(batch.removeprefix(f"{FLUSHING}counts:").split(":")[0])
        for token_id, count in values.items():
            if int(token_id) in existing:
                add_usage(int(token_id), day, int(count))
        return sum(int(count) for token_id, count in values.items() if int(token_id) in existing)
    for token_id, value in values.items():
        if int(token_id) not in existing:
            continue
        stamp, _, ip = value.partition("|")
        used_at = datetime.fromtimestamp(float(stamp), tz=UTC)
        PersonalAccessToken.objects.filter(pk=int(token_id)).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=used_at)
        ).update(last_used_at=used_at, last_used_ip=ip or None)
    return 0
