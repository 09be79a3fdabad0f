"""The background work's services: expiry reminders, administrators' weekly
digests, "used from a new address" notices, the dashboard's stored figures,
the reconciliation of ``marked_inactive`` and housekeeping.

Each is idempotent: a unique row is written in the same transaction as the
email is sent, so retries, overlapping beats and several workers send once.
The Celery tasks in ``tokens.tasks`` only wrap these.
"""

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.tasks import RETRY
from iam.models import AuditEvent, ServiceRole
from iam.selectors import users_holding_service_role
from tenants.models import Tenant
from tokens.models import (
    AdminDigest,
    EmbedSession,
    ExpiryReminder,
    PersonalAccessToken,
    TenantTokenFigures,
    TokenAddress,
    TokenKind,
    TokenStatus,
)
from tokens.selectors import inactive_condition, tenant_figures

logger = logging.getLogger(__name__)

BATCH_SIZE = 5000
TENANTS_PER_FIGURES_BATCH = 10
RECONCILE_ID_RANGE = 100_000


def expiry_reminders_due(now: datetime | None = None) -> Iterator[tuple[int, int]]:
    """Yield (token id, days before) for every reminder due and not yet sent.

    Only the nearest threshold is due: a token found one day before expiry
    gets the one-day reminder, not a late seven-day one as well. Thresholds
    longer than a token's whole lifetime are skipped.
    """
    now = now or timezone.now()
    days_by_tenant = {
        tenant_id: sorted({int(d) for d in days if isinstance(d, int) and 0 < d <= 365})
        for tenant_id, days in Tenant.objects.values_list("pk", "reminder_days")
    }
    horizon = max((max(days) for days in days_by_tenant.values() if days), default=0)
    if not horizon:
        return
    candidates = (
        PersonalAccessToken.objects.filter(
            status=TokenStatus.ACTIVE,
            kind=TokenKind.PERSONAL,
            expires_at__gt=now,
            expires_at__lte=now + timedelta(days=horizon),
        )
        .values_list("pk", "tenant_id", "created_at", "expires_at")
        .order_by()
        .iterator(chunk_size=BATCH_SIZE)
    )
    batch: list[tuple[int, int, datetime, datetime]] = []
    for row in candidates:
        batch.append(row)
        if len(batch) >= BATCH_SIZE:
            yield from _due_in(batch, days_by_tenant, now)
            batch = []
    yield from _due_in(batch, days_by_tenant, now)


def _due_in(rows, days_by_tenant, now) -> Iterator[tuple[int, int]]:
    if not rows:
        return
    sent = set(
        ExpiryReminder.objects.filter(token_id__in=[row[0] for row in rows]).values_list(
            "token_id", "days_before", "expires_at"
        )
    )
    for token_id, tenant_id, created_at, expires_at in rows:
        due = [d for d in days_by_tenant.get(tenant_id, []) if expires_at <= now + timedelta(days=d)]
        if not due:
            continue
        nearest = min(due)
        if expires_at - timedelta(days=nearest) <= created_at:
            continue  # the token never lived that long: no reminder for this threshold
        if (token_id, nearest, expires_at) not in sent:
            yield token_id, nearest


def expiry_reminder_send(token_id: int, days_before: int, now: datetime | None = None) -> bool:
    """Email the owner that a token expires in ``days_before`` days; send each
    reminder once. Returns whether this call sent it."""
    now = now or timezone.now()
    token = PersonalAccessToken.objects.select_related("owner", "application").filter(pk=token_id).first()
    if (
        token is None
        or token.status != TokenStatus.ACTIVE
        or not (now < token.expires_at <= now + timedelta(days=days_before))
        or not token.owner.email
    ):
        return False
    try:
        with transaction.atomic():
            ExpiryReminder.objects.create(token=token, days_before=days_before, expires_at=token.expires_at)
            # Inside the transaction: if sending fails the row goes too and a retry sends.
            send_mail(
                f"Your personal access token “{token.name}” expires in {_days(days_before)}",
                f"Your personal access token “{token.name}” ({token.display_prefix}…) for "
                f"{token.application.name if token.application else 'this service'} expires on "
                f"{timezone.localtime(token.expires_at):%d %B %Y at %H:%M %Z}.\n\n"
                f"Extend it here: {settings.PUBLIC_URL}/tokens/{token.pk}/edit/\n",
                settings.DEFAULT_FROM_EMAIL,
                [token.owner.email],
            )
    except IntegrityError:
        return False  # already sent (another worker, an overlapping sweep, a retry)
    return True


def _days(days: int) -> str:
    return "1 day" if days == 1 else f"{days} days"


def admin_digests_send(now: datetime | None = None) -> int:
    """Send each user administrator, once a week, their tenant's tokens expiring within 7 days."""
    now = now or timezone.now()
    year, week, _ = now.isocalendar()
    label = f"{year}-W{week:02d}"
    admins = users_holding_service_role(ServiceRole.USER_ADMINISTRATOR).filter(is_active=True).exclude(email="")
    sent = 0
    for admin in admins.select_related("tenant"):
        expiring = list(
            PersonalAccessToken.objects.filter(
                tenant_id=admin.tenant_id,
                status=TokenStatus.ACTIVE,
                expires_at__gt=now,
                expires_at__lte=now + timedelta(days=7),
            )
            .select_related("owner", "application")
            .order_by("expires_at")[:200]
        )
        lines = [
            f"- {t.name} ({t.display_prefix}…) of {t.owner.username}, "
            f"{t.application.name if t.application else 'administrative'}, expires {t.expires_at:%Y-%m-%d %H:%M}"
            for t in expiring
        ] or ["No token expires in the next 7 days."]
        try:
            with transaction.atomic():
                AdminDigest.objects.create(recipient=admin, week=label)
                send_mail(
                    f"{admin.tenant.name}: {len(expiring)} personal access token(s) expire this week",
                    "\n".join(lines) + f"\n\nOverview: {settings.PUBLIC_URL}/admin/tokens/personalaccesstoken/"
                    "?expiring=7\n",
                    settings.DEFAULT_FROM_EMAIL,
                    [admin.email],
                )
        except IntegrityError:
            continue
        sent += 1
    return sent


def token_address_note(token_id: int, ip: str) -> bool:
    """Remember an address a token was used from; email the owner the first
    time it is not the token's first address (if the tenant wants that).
    Returns whether a notice was sent."""
    token = PersonalAccessToken.objects.select_related("owner", "tenant", "application").filter(pk=token_id).first()
    if token is None:
        return False
    try:
        with transaction.atomic():
            TokenAddress.objects.create(token=token, ip=ip)
            if not token.tenant.notify_new_ip or not token.owner.email:
                return False
            if not TokenAddress.objects.filter(token=token).exclude(ip=ip).exists():
                return False  # the first address a token is used from is not news
            send_mail(
                f"Your personal access token “{token.name}” was used from a new address",
                f"Your personal access token “{token.name}” ({token.display_prefix}…) was just used from {ip}, "
                "an address it had not been used from before. If this was not you or your integration, "
                f"delete the token: {settings.PUBLIC_URL}/tokens/\n",
                settings.DEFAULT_FROM_EMAIL,
                [token.owner.email],
            )
    except IntegrityError:
        return False  # already known
    return True


@shared_task(name="tokens.tasks.note_token_address", **RETRY)
def note_token_address(token_id: int, ip: str) -> bool:
    return token_address_note(token_id, ip)


def embed_sessions_prune(now: datetime | None = None) -> int:
    """Delete expired embed sessions, in batches."""
    return _delete_in_batches(EmbedSession.objects.filter(expires_at__lte=now or timezone.now()))


def audit_events_prune(now: datetime | None = None) -> int:
    """Delete audit events older than AUDIT_RETENTION_DAYS, in batches."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.AUDIT_RETENTION_DAYS)
    return _delete_in_batches(AuditEvent.objects.filter(occurred_at__lt=cutoff))


def _delete_in_batches(queryset) -> int:
    deleted = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:BATCH_SIZE])
        if not ids:
            return deleted
        count, _ = queryset.model.objects.filter(pk__in=ids).delete()
        deleted += count


def dashboard_figures_refresh(now: datetime | None = None) -> int:
    """Recompute and store every tenant's dashboard figures, a few tenants at
    a time (beat: every ``DASHBOARD_REFRESH_SECONDS``). Returns the tenants."""
    now = now or timezone.now()
    tenant_ids = list(Tenant.objects.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(tenant_ids), TENANTS_PER_FIGURES_BATCH):
        chunk = tenant_ids[start : start + TENANTS_PER_FIGURES_BATCH]
        figures = tenant_figures(PersonalAccessToken.objects.filter(tenant_id__in=chunk), now, chunk)
        TenantTokenFigures.objects.bulk_create(
            [
                TenantTokenFigures(
                    tenant_id=tenant_id, computed_at=now, tokens=sum(row["by_status"].values()), figures=row
                )
                for tenant_id, row in figures.items()
            ],
            update_conflicts=True,
            unique_fields=["tenant"],
            update_fields=["computed_at", "tokens", "figures"],
        )
    return len(tenant_ids)


def inactive_marks_reconcile(now: datetime | None = None) -> int:
    """Make ``marked_inactive`` agree with the rules for every token that is
    neither ended nor expired, in id ranges (beat: hourly). The services keep
    the mark as they change things; a correction here means something changed
    the IAM around them (a shell, a raw query), so it is logged. Returns the
    number of tokens corrected."""
    now = now or timezone.now()
    live = PersonalAccessToken.objects.filter(status=TokenStatus.ACTIVE, expires_at__gt=now)
    last_id = live.order_by("-pk").values_list("pk", flat=True).first() or 0
    corrected = 0
    for start in range(0, last_id + 1, RECONCILE_ID_RANGE):
        batch = live.filter(pk__gte=start, pk__lt=start + RECONCILE_ID_RANGE)
        corrected += batch.filter(inactive_condition(), marked_inactive=False).update(marked_inactive=True)
        corrected += batch.filter(marked_inactive=True).exclude(inactive_condition()).update(marked_inactive=False)
    if corrected:
        logger.warning("Corrected the inactive mark of %d token(s): a change bypassed the services.", corrected)
    return corrected
