"""The tenant policy "end tokens not used for N days" (GitHub ends tokens
unused for a year, Okta after idle days). Beat runs ``idle_tokens_sweep``
hourly: a token idle (since its last use, or its creation if never used)
for N - 7 days gets its owner told once; one still idle after N days, and
told at least 7 days before, is revoked with the cause ``unused``.
Idempotent; tokens are read in id order, in batches."""

from collections import defaultdict
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from tenants.models import UNUSED_TOKEN_NOTICE_DAYS, Tenant
from tokens.models import PersonalAccessToken, RevocationCause, TokenKind, TokenStatus
from tokens.notifications import enqueue_unused_notice
from tokens.services import token_revoke

BATCH_SIZE = 2000
NOTICE = timedelta(days=UNUSED_TOKEN_NOTICE_DAYS)


def idle_tokens_sweep(now: datetime | None = None) -> dict[str, int]:
    """Warn and end the idle tokens of every tenant with the policy on; return how many of each."""
    now = now or timezone.now()
    warned = ended = 0
    for tenant_id, days in Tenant.objects.filter(unused_token_days__isnull=False).values_list(
        "pk", "unused_token_days"
    ):
        live = (
            PersonalAccessToken.objects.filter(
                tenant_id=tenant_id, status=TokenStatus.ACTIVE, kind=TokenKind.PERSONAL, expires_at__gt=now
            )
            .annotate(idle_since=Coalesce("last_used_at", "created_at"))
            .filter(idle_since__lte=now - timedelta(days=days) + NOTICE)
        )
        warned += _warn(
            live.filter(Q(unused_warned_at__isnull=True) | Q(unused_warned_at__lt=F("idle_since"))), days, now
        )
        due = live.filter(
            idle_since__lte=now - timedelta(days=days),
            unused_warned_at__lte=now - NOTICE,
            unused_warned_at__gte=F("idle_since"),
        )
        ended += _end(due, days, now)
    return {"warned": warned, "ended": ended}


def _warn(tokens, days: int, now: datetime) -> int:
    rows = list(tokens.order_by("pk").values_list("pk", "owner_id", "idle_since")[: BATCH_SIZE * 50])
    by_owner: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for start in range(0, len(rows), BATCH_SIZE):
        batch = rows[start : start + BATCH_SIZE]
        with transaction.atomic():
            PersonalAccessToken.objects.filter(pk__in=[pk for pk, _, _ in batch]).update(unused_warned_at=now)
            for pk, owner_id, idle_since in batch:
                ends_on = max(idle_since + timedelta(days=days), now + NOTICE)
                by_owner[owner_id].append((pk, ends_on.isoformat()))
    for owner_id, tokens_ending in by_owner.items():
        enqueue_unused_notice(owner_id, tokens_ending, days)
    return len(rows)


def _end(tokens, days: int, now: datetime) -> int:
    ended = 0
    for token in tokens.order_by("pk").select_related("tenant")[: BATCH_SIZE * 50].iterator(chunk_size=BATCH_SIZE):
        token_revoke(
            token=token,
            actor=None,
            cause=RevocationCause.UNUSED,
            actor_label="unused-token policy",
            reason=f"Not used for {days} days (the tenant's policy).",
            now=now,
        )
        ended += 1
    return ended
