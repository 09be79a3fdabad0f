"""Recording token use without a database write on every request.

Uses are counted in process memory and written at most once a minute per
token (``last_used`` time and IP, and the per-day count), so a process that
dies loses at most a minute of counts for the tokens it served.
"""

import threading
from collections import defaultdict
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q

from tokens.models import PersonalAccessToken, TokenUsageDay

_lock = threading.Lock()
_pending: dict[int, dict[date, int]] = defaultdict(lambda: defaultdict(int))


def usage_record(token: PersonalAccessToken, *, ip: str | None, now: datetime) -> None:
    """Count one use of ``token``; write to the database if its last write is a minute old."""
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
        usage_flush(token.pk)


def usage_flush(token_id: int | None = None) -> None:
    """Add the counts held in memory (for one token, or all) to the database."""
    with _lock:
        ids = [token_id] if token_id is not None else list(_pending)
        batches = {tid: dict(_pending.pop(tid)) for tid in ids if tid in _pending}
    for tid, days in batches.items():
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
