"""Emails: to token owners about security events and coming expiries, and
to administrators (weekly digests).

Each background send is idempotent: a unique row is written in the same
transaction as the email is sent, so retries, overlapping beats and several
workers send once. The Celery tasks in ``tokens.tasks`` only wrap these.
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
from iam.models import ServiceRole
from iam.selectors import users_holding_service_role
from tenants.models import Tenant
from tokens.models import (
    AdminDigest,
    ExpiryReminder,
    PersonalAccessToken,
    RevocationCause,
    TokenAddress,
    TokenKind,
    TokenStatus,
)

logger = logging.getLogger(__name__)

BATCH_SIZE = 5000

SUBJECTS = {
    "revoked": "Your personal access token “{name}” was revoked",
    "reported_leaked": "Your personal access token “{name}” was reported leaked and revoked",
    "reuse_detected": "An old secret of your personal access token “{name}” was used: the token was revoked",
}
# Who ended the token, by its recorded cause (the "revoked" event).
REVOKERS = {
    RevocationCause.ADMINISTRATOR: "{who}, an administrator, revoked",
    RevocationCause.INTEGRATION: "The {who} ended",
    RevocationCause.OPERATOR: "An operator of the service revoked",
}
BODIES = {
    "revoked": "{revoker} your personal access token “{name}” ({prefix}…) for {application}. "
    "It no longer works and cannot be reactivated.{detail}",
    "reported_leaked": "Someone reported your personal access token “{name}” ({prefix}…) for {application} as "
    "leaked (found in public), so it was revoked at once. Create a new token and replace it wherever "
    "it was used.{detail}",
    "reuse_detected": "A secret your personal access token “{name}” for {application} had before it was "
    "regenerated was used after its grace period ended, so someone other than your integration holds it. "
    "The token was revoked at once, its current secret ({prefix}…) too. Find where the old secret leaked, "
    "then create a new token.{detail}",
}


def enqueue_after_commit(task, send_now, *args) -> None:
    """Queue a notice once the current transaction commits (through Celery;
    in-process if the broker cannot be reached, so nothing is lost)."""

    def enqueue() -> None:
        try:
            task.delay(*args)
        except Exception:  # noqa: BLE001 - broker down: send now rather than never
            logger.warning("task broker unavailable: sending %s in-process", task.name)
            send_now(*args)

    transaction.on_commit(enqueue)


def enqueue_token_notification(token_id: int, event: str, detail: str = "") -> None:
    """Email the owner about ``event`` once the current transaction commits."""
    enqueue_after_commit(notify_token_owner, send_token_notification, token_id, event, detail)


def send_token_notification(token_id: int, event: str, detail: str = "") -> bool:
    """Email the owner of a token about ``event``; return False if there is nobody to tell."""
    token = PersonalAccessToken.objects.select_related("owner", "application", "revoked_by").filter(pk=token_id).first()
    if token is None or not token.owner.email or event not in SUBJECTS:
        return False
    revoker = REVOKERS.get(token.revocation_cause, REVOKERS[RevocationCause.OPERATOR])
    if token.revocation_reason and not detail and event in ("revoked", "reuse_detected"):
        detail = f"Reason given: {token.revocation_reason}"
    values = {
        "name": token.name,
        "prefix": token.display_prefix,
        "application": token.application.name if token.application else "this service's API",
        "revoker": revoker.format(who=token.revoked_by_name or "an administrator"),
        "detail": f"\n\n{detail}" if detail else "",
    }
    send_mail(
        SUBJECTS[event].format(**values),
        BODIES[event].format(**values) + f"\n\nYour tokens: {settings.PUBLIC_URL}/tokens/",
        settings.DEFAULT_FROM_EMAIL,
        [token.owner.email],
    )
    return True


def enqueue_expiry_shortened_notice(owner_id: int, token_ids: list[int], max_days: int) -> None:
    """Tell an owner, once per policy change, which of their tokens now expire sooner (after commit)."""
    enqueue_after_commit(notify_expiry_shortened, send_expiry_shortened_notice, owner_id, token_ids, max_days)


def send_expiry_shortened_notice(owner_id: int, token_ids: list[int], max_days: int) -> bool:
    """Email an owner the tokens a tighter tenant policy shortened, with their new expiry."""
    tokens = list(
        PersonalAccessToken.objects.select_related("owner", "application").filter(pk__in=token_ids).order_by("name")
    )
    if not tokens or not tokens[0].owner.email:
        return False
    lines = "\n".join(
        f"- “{token.name}” ({token.display_prefix}…), {token.application_label}: "
        f"now expires {token.expires_at:%-d %b %Y %H:%M} UTC"
        for token in tokens
    )
    count = len(tokens)
    send_mail(
        f"{count} of your personal access tokens now expire sooner"
        if count > 1
        else f"Your personal access token “{tokens[0].name}” now expires sooner",
        f"Your tenant now allows personal access tokens to last at most {max_days} days, so "
        f"{'these tokens' if count > 1 else 'this token'} will expire sooner than you chose:\n\n{lines}\n\n"
        f"Plan to replace {'them' if count > 1 else 'it'} before then.\n\nYour tokens: {settings.PUBLIC_URL}/tokens/",
        settings.DEFAULT_FROM_EMAIL,
        [tokens[0].owner.email],
    )
    return True


# The tasks keep the names they were queued under before they moved here.
@shared_task(name="tokens.tasks.notify_token_owner", **RETRY)
def notify_token_owner(token_id: int, event: str, detail: str = "") -> bool:
    return send_token_notification(token_id, event, detail)


@shared_task(name="tokens.tasks.notify_expiry_shortened", **RETRY)
def notify_expiry_shortened(owner_id: int, token_ids: list[int], max_days: int) -> bool:
    return send_expiry_shortened_notice(owner_id, token_ids, max_days)


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
                f"Regenerate it (a new secret, the old one stops when you choose): "
                f"{settings.PUBLIC_URL}/tokens/{token.pk}/regenerate/\n\n"
                f"Or extend it and keep the same secret: {settings.PUBLIC_URL}/tokens/{token.pk}/edit/\n",
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
