"""The tenant policy "end tokens not used for N days" (GitHub ends tokens
unused for a year, Okta after idle days). Beat runs ``idle_tokens_sweep``
hourly: a token idle (since its last use, or its creation if never used)
for N - 7 days gets its owner told once; one still idle after N days, and
told at least 7 days before, is revoked with the cause ``unused``.
Idempotent, in batches, at most ``RUN_LIMIT`` tokens a run (the task then
queues the next run at once, so a backlog drains in runs of seconds)."""

from collections import defaultdict
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from iam.audit import audit_record_many
from iam.models import AuditAction
from tenants.models import UNUSED_TOKEN_NOTICE_DAYS, Tenant
from tokens.authcache import invalidate
from tokens.models import Approval, PersonalAccessToken, RevocationCause, TokenKind, TokenStatus
from tokens.notifications import enqueue_unused_ended_notice, enqueue_unused_notice

BATCH_SIZE = 2000
RUN_LIMIT = 50_000  # tokens told or ended per run; the task queues the next run at once when it stops there
NOTICE = timedelta(days=UNUSED_TOKEN_NOTICE_DAYS)
USABLE_APPROVALS = [Approval.NOT_NEEDED, Approval.APPROVED]
UNUSED_POLICY = "unused-token policy"  # who revoked them, as the owner and the console read it


def unused_end(token: PersonalAccessToken, now: datetime) -> datetime | None:
    """When the sweep will end ``token`` if it stays unused (None: the policy is off or does not apply)."""
    days = token.tenant.unused_token_days
    if (
        days is None
        or token.status != TokenStatus.ACTIVE
        or token.kind != TokenKind.PERSONAL
        or token.approval not in USABLE_APPROVALS
        or token.expires_at <= now
    ):
        return None
    idle_since = token.last_used_at or token.approval_decided_at or token.created_at
    warned = token.unused_warned_at if token.unused_warned_at and token.unused_warned_at >= idle_since else now
    end = max(idle_since + timedelta(days=days), warned + NOTICE)
    return end if end < token.expires_at else None


def idle_tokens_sweep(now: datetime | None = None, limit: int | None = None) -> dict[str, int | bool]:
    """End the due idle tokens and warn those coming due, of every tenant with
    the policy on, at most ``limit`` tokens in all (so a run stays well under
    a minute however many tokens a newly switched-on policy finds); ``more``
    says the run stopped at the limit and another should follow at once."""
    now = now or timezone.now()
    limit = RUN_LIMIT if limit is None else limit
    warned = ended = 0
    for tenant_id, days in (
        Tenant.objects.filter(unused_token_days__isnull=False).order_by("pk").values_list("pk", "unused_token_days")
    ):
        live = (
            PersonalAccessToken.objects.filter(
                tenant_id=tenant_id,
                status=TokenStatus.ACTIVE,
                kind=TokenKind.PERSONAL,
                expires_at__gt=now,
                approval__in=USABLE_APPROVALS,  # a token waiting for approval cannot be used yet
            )
            .annotate(idle_since=Coalesce("last_used_at", "approval_decided_at", "created_at"))
            .filter(idle_since__lte=now - timedelta(days=days) + NOTICE)
        )
        due = live.filter(
            idle_since__lte=now - timedelta(days=days),
            unused_warned_at__lte=now - NOTICE,
            unused_warned_at__gte=F("idle_since"),
        )
        # Ending first: those tokens are overdue; a warning can wait for the next run.
        ended += _end(due, tenant_id, days, now, limit - warned - ended)
        coming = live.filter(Q(unused_warned_at__isnull=True) | Q(unused_warned_at__lt=F("idle_since")))
        warned += _warn(coming, days, now, limit - warned - ended)
        if warned + ended >= limit:
            return {"warned": warned, "ended": ended, "more": True}
    return {"warned": warned, "ended": ended, "more": False}


def _locked(tokens, batch: list[int], fields: tuple[str, ...]) -> list[tuple]:
    """The batch's rows that still qualify, locked; rows another sweep holds are
    skipped (it is handling them), so overlapping runs never tell or end twice."""
    return list(tokens.filter(pk__in=batch).select_for_update(skip_locked=True, of=("self",)).values_list(*fields))


def _warn(tokens, days: int, now: datetime, limit: int) -> int:
    rows = list(tokens.order_by("pk").values_list("pk", flat=True)[: max(limit, 0)])
    by_owner: dict[int, list[tuple[int, str]]] = defaultdict(list)
    warned = 0
    for start in range(0, len(rows), BATCH_SIZE):
        with transaction.atomic():
            batch = _locked(tokens, rows[start : start + BATCH_SIZE], ("pk", "owner_id", "idle_since"))
            PersonalAccessToken.objects.filter(pk__in=[pk for pk, _, _ in batch]).update(unused_warned_at=now)
        for pk, owner_id, idle_since in batch:
            ends_on = max(idle_since + timedelta(days=days), now + NOTICE)
            by_owner[owner_id].append((pk, ends_on.isoformat()))
        warned += len(batch)
    for owner_id, tokens_ending in by_owner.items():
        enqueue_unused_notice(owner_id, tokens_ending, days)
    return warned


def _end(tokens, tenant_id: int, days: int, now: datetime, limit: int) -> int:
    """Revoke the due tokens a batch at a time: one UPDATE, one INSERT of
    their audit events and one invalidation of the tenant's cached entries a
    batch, and one e-mail per owner, instead of a transaction per token."""
    reason = f"Not used for {days} days (the tenant's policy)."
    rows = list(tokens.order_by("pk").values_list("pk", flat=True)[: max(limit, 0)])
    by_owner: dict[int, list[int]] = defaultdict(list)
    ended = 0
    for start in range(0, len(rows), BATCH_SIZE):
        with transaction.atomic():
            # Locked and read again: a token used, edited or revoked since is left alone.
            due = _locked(tokens, rows[start : start + BATCH_SIZE], ("pk", "owner_id"))
            ids = [pk for pk, _ in due]
            PersonalAccessToken.objects.filter(pk__in=ids).update(
                status=TokenStatus.REVOKED,
                revoked_at=now,
                revocation_cause=RevocationCause.UNUSED,
                revoked_by_label=UNUSED_POLICY,
                revocation_reason=reason,
            )
            audit_record_many(
                action=AuditAction.TOKEN_REVOKED,
                tenant_id=tenant_id,
                actor=None,
                label=UNUSED_POLICY,
                reason=reason,
                per_token={pk: {"cause": RevocationCause.UNUSED.value} for pk in ids},
            )
            if ids:
                invalidate(f"tenant:{tenant_id}")  # UPDATE sends no signal: the tenant's entries, once a batch
        for pk, owner_id in due:
            by_owner[owner_id].append(pk)
        ended += len(due)
    for owner_id, token_ids in by_owner.items():
        enqueue_unused_ended_notice(owner_id, token_ids, days)
    return ended
