"""A token presented from outside its allowed networks: refused like any bad
token (the request writes nothing); the address is remembered in the
background, for the token's page (``last_refused_ip``)."""

import threading
from datetime import datetime

from celery import shared_task
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.tasks import RETRY
from tokens.models import PersonalAccessToken
from tokens.notifications import enqueue_after_commit

_reported: dict[tuple[int, str | None], int] = {}  # (token, address) -> the minute last reported from this process
_reported_lock = threading.Lock()
REPORTED_REMEMBERED = 10_000


def refused_address_report(token_id: int, ip: str | None, now: datetime) -> None:
    """Queue the note, at most once a minute per token and address in this process (a flood queues little)."""
    minute = int(now.timestamp()) // 60
    with _reported_lock:
        if _reported.get((token_id, ip)) == minute:
            return
        if len(_reported) >= REPORTED_REMEMBERED:
            _reported.clear()
        _reported[(token_id, ip)] = minute
    enqueue_after_commit(note_refused_address, note_refused_address, token_id, ip, now.isoformat())


def refused_address_record(token_id: int, ip: str | None, at: datetime) -> bool:
    """Keep the latest refused address of a token (an older note never overwrites a newer one)."""
    newer = Q(last_refused_at__isnull=True) | Q(last_refused_at__lt=at)
    return bool(PersonalAccessToken.objects.filter(newer, pk=token_id).update(last_refused_ip=ip, last_refused_at=at))


@shared_task(name="tokens.tasks.note_refused_address", **RETRY)
def note_refused_address(token_id: int, ip: str | None, at: str) -> bool:
    return refused_address_record(token_id, ip, parse_datetime(at) or timezone.now())
