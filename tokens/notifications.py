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
from django.db.models import Exists, OuterRef
from django.utils import timezone

from core.tasks import RETRY
from core.text import counted
from iam.models import ServiceRole
from iam.selectors import users_holding_service_role
from tenants.models import Tenant
from tokens.models import (
    AdminDigest,
    Approval,
    ApprovalDigest,
    ExpiryReminder,
    PersonalAccessToken,
    RevocationCause,
    TokenAddress,
    TokenKind,
    TokenStatus,
    WebhookEndpoint,
    WebhookEvent,
)
from tokens.rules import token_states
from tokens.selectors import token_approvers
from tokens.webhooks import webhook_event_emit

logger = logging.getLogger(__name__)

BATCH_SIZE = 5000

SUBJECTS = {
    "revoked": "Your personal access token “{name}” was revoked",
    "reported_leaked": "Your personal access token “{name}” was reported leaked and revoked",
    "reuse_detected": "An old secret of your personal access token “{name}” was used: the token was revoked",
    "approved": "Your personal access token “{name}” was approved",
    "denied": "Your personal access token “{name}” was denied",
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
    "approved": "{decider}, an administrator, approved your personal access token “{name}” ({prefix}…) for "
    "{application}: it works from now on.{detail}",
    "denied": "{decider}, an administrator, denied your personal access token “{name}” ({prefix}…) for "
    "{application}. It will never work; delete it, and create one without the permissions that need "
    "approval if that suits your integration.{detail}",
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
    if token.approval_note and not detail and event in ("approved", "denied"):
        detail = f"{'Note' if event == 'approved' else 'Reason given'}: {token.approval_note}"
    values = {
        "name": token.name,
        "prefix": token.display_prefix,
        "application": token.application.name if token.application else "this service's API",
        "revoker": revoker.format(who=token.revoked_by_name or "an administrator"),
        "decider": token.approval_decided_by_label or "A user administrator",
        "detail": f"\n\n{detail}" if detail else "",
    }
    send_mail(
        SUBJECTS[event].format(**values),
        BODIES[event].format(**values) + f"\n\nYour tokens: {settings.PUBLIC_URL}/tokens/",
        settings.DEFAULT_FROM_EMAIL,
        [token.owner.email],
    )
    return True


ISSUED_SUBJECTS = {
    "created": "A new personal access token “{name}” was created",
    "regenerated": "Your personal access token “{name}” was regenerated",
}
ISSUED_OPENINGS = {
    "created": "A new personal access token of yours was created by {issuer}",
    "regenerated": "Your personal access token was regenerated by {issuer}: it has a new secret",
}


def enqueue_issued_notice(token_id: int, event: str, *, issuer: str, ip: str | None, prefix: str = "") -> None:
    """Tell the owner a token of theirs was created or regenerated (after commit).
    ``prefix`` is the secret's display prefix then: the notice describes the
    secret it announces even if the token changes again before it is sent."""
    enqueue_after_commit(notify_token_issued, send_issued_notice, token_id, event, issuer, ip or "", prefix)


def send_issued_notice(token_id: int, event: str, issuer: str, ip: str, prefix: str = "") -> bool:
    """Email the owner the token's name, application, permissions and expiry,
    who issued it and from which address; False if there is nobody to tell."""
    token = PersonalAccessToken.objects.select_related("owner", "application").filter(pk=token_id).first()
    if token is None or not token.owner.email or event not in ISSUED_SUBJECTS:
        return False
    permissions = ", ".join(token.roles.order_by("name").values_list("name", flat=True)) or "none"
    lines = [
        ISSUED_OPENINGS[event].format(issuer=issuer) + ".",
        "",
        f"Name: {token.name}",
        *([f"Purpose: {token.purpose}"] if token.purpose else []),
        f"Secret: {prefix or token.display_prefix}…",
        f"Application: {token.application_label}",
        f"Permissions: {permissions}",
        f"Expires: {timezone.localtime(token.expires_at):%d %B %Y at %H:%M %Z}",
        f"From address: {ip or 'unknown'}",
        "",
        "If you did not expect this, delete the token and tell your administrator.",
        "",
        f"Your tokens: {settings.PUBLIC_URL}/tokens/",
    ]
    send_mail(
        ISSUED_SUBJECTS[event].format(name=token.name),
        "\n".join(lines) + "\n",
        settings.DEFAULT_FROM_EMAIL,
        [token.owner.email],
    )
    return True


def enqueue_unused_notice(owner_id: int, tokens_ending: list[tuple[int, str]], days: int) -> None:
    """Tell an owner which idle tokens will be ended, and when (after commit)."""
    enqueue_after_commit(notify_unused_tokens, send_unused_notice, owner_id, tokens_ending, days)


def _owners_tokens(token_ids) -> list[PersonalAccessToken]:
    """One owner's tokens by name, or none if there is nobody to e-mail."""
    tokens = list(
        PersonalAccessToken.objects.select_related("owner", "application").filter(pk__in=token_ids).order_by("name")
    )
    return tokens if tokens and tokens[0].owner.email else []


def _token_line(token: PersonalAccessToken, what: str) -> str:
    return f"- “{token.name}” ({token.display_prefix}…), {token.application_label}: {what}"


def send_unused_notice(owner_id: int, tokens_ending: list[tuple[int, str]], days: int) -> bool:
    """Email an owner the idle tokens the tenant's policy will end, and when."""
    ends = {int(pk): datetime.fromisoformat(when) for pk, when in tokens_ending}
    tokens = _owners_tokens(ends)
    if not tokens:
        return False
    lines = "\n".join(_token_line(token, f"ended on {ends[token.pk]:%-d %b %Y} unless used before") for token in tokens)
    return _owner_told(
        tokens,
        "{count} of your personal access tokens will be ended for not being used",
        "Your personal access token “{name}” will be ended for not being used",
        f"Your tenant ends personal access tokens not used for {days} days. These have not been used "
        f"for a while:\n\n{lines}\n\nUsing a token keeps it; if you no longer need it, delete it.",
    )


def _owner_told(tokens: list[PersonalAccessToken], many: str, one: str, body: str) -> bool:
    """E-mail the owner of ``tokens`` (from ``_owners_tokens``) one notice about
    them all: the subject ``many`` (with ``{count}``) or ``one`` (with ``{name}``)."""
    subject = many.format(count=len(tokens)) if len(tokens) > 1 else one.format(name=tokens[0].name)
    body += f"\n\nYour tokens: {settings.PUBLIC_URL}/tokens/"
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [tokens[0].owner.email])
    return True


def enqueue_unused_ended_notice(owner_id: int, token_ids: list[int], days: int) -> None:
    """Tell an owner, once per sweep, which of their idle tokens were ended (after commit)."""
    enqueue_after_commit(notify_unused_ended, send_unused_ended_notice, owner_id, token_ids, days)


def send_unused_ended_notice(owner_id: int, token_ids: list[int], days: int) -> bool:
    tokens = _owners_tokens(token_ids)
    if not tokens:
        return False
    lines = "\n".join(_token_line(token, "revoked") for token in tokens)
    return _owner_told(
        tokens,
        "{count} of your personal access tokens were revoked for not being used",
        "Your personal access token “{name}” was revoked for not being used",
        f"Your tenant ends personal access tokens not used for {days} days, and you were told a week ago. "
        f"These no longer work and cannot be reactivated:\n\n{lines}\n\nCreate a new token if you need one again.",
    )


def enqueue_revoked_notice(owner_id: int, token_ids: list[int]) -> None:
    """Tell an owner, once per console action, which of their tokens an administrator revoked (after commit)."""
    enqueue_after_commit(notify_revoked_tokens, send_revoked_notice, owner_id, token_ids)


def send_revoked_notice(owner_id: int, token_ids: list[int]) -> bool:
    tokens = _owners_tokens(token_ids)
    if not tokens:
        return False
    if len(tokens) == 1:
        return send_token_notification(tokens[0].pk, "revoked")
    first = tokens[0]  # one action: one administrator, one reason
    revoker = REVOKERS[RevocationCause.ADMINISTRATOR].format(who=first.revoked_by_name or "an administrator")
    lines = "\n".join(_token_line(token, "revoked") for token in tokens)
    reason = f"\n\nReason given: {first.revocation_reason}" if first.revocation_reason else ""
    return _owner_told(
        tokens,
        "{count} of your personal access tokens were revoked",
        "",
        f"{revoker} these personal access tokens of yours:\n\n{lines}\n\n"
        f"They no longer work and cannot be reactivated.{reason}",
    )


def enqueue_expiry_shortened_notice(owner_id: int, token_ids: list[int], max_days: int) -> None:
    """Tell an owner, once per policy change, which of their tokens now expire sooner (after commit)."""
    enqueue_after_commit(notify_expiry_shortened, send_expiry_shortened_notice, owner_id, token_ids, max_days)


def send_expiry_shortened_notice(owner_id: int, token_ids: list[int], max_days: int) -> bool:
    """Email an owner the tokens a tighter tenant policy shortened, with their new expiry."""
    tokens = _owners_tokens(token_ids)
    if not tokens:
        return False
    lines = "\n".join(_token_line(token, f"now expires {token.expires_at:%-d %b %Y %H:%M} UTC") for token in tokens)
    many = len(tokens) > 1
    return _owner_told(
        tokens,
        "{count} of your personal access tokens now expire sooner",
        "Your personal access token “{name}” now expires sooner",
        f"Your tenant now allows personal access tokens to last at most {max_days} days, so "
        f"{'these tokens' if many else 'this token'} will expire sooner than you chose:\n\n{lines}\n\n"
        f"Plan to replace {'them' if many else 'it'} before then.",
    )


def enqueue_inactivated_notice(owner_id: int, token_ids: list[int], changed_by: str) -> None:
    """Tell an owner, once per administrator's change, which of their tokens it
    made inactive (after commit): an integration using them is refused from now
    on, and without a word it would only find out from its failures."""
    enqueue_after_commit(notify_inactivated_tokens, send_inactivated_notice, owner_id, token_ids, changed_by)


def send_inactivated_notice(owner_id: int, token_ids: list[int], changed_by: str) -> bool:
    """Email an owner the tokens a change made inactive, each with why, and what
    will help. The reasons are read when sending: a token active again by then
    (the change undone) is left out, and nothing is sent if none is left, nor
    to an account that is itself deactivated."""
    tokens = _owners_tokens(token_ids)
    if not tokens or not tokens[0].owner.is_active:
        return False
    states = token_states(tokens)
    tokens = [token for token in tokens if states[token.pk].inactive_reasons and not states[token.pk].is_usable]
    if not tokens:
        return False
    many = len(tokens) > 1
    lines = "\n".join(_token_line(token, states[token.pk].owner_reason_text) for token in tokens)
    advice = dict.fromkeys(tip for token in tokens for tip in states[token.pk].owner_advice)
    tips = "\n".join(f"- {tip}" for tip in advice)
    return _owner_told(
        tokens,
        "{count} of your personal access tokens no longer work",
        "Your personal access token “{name}” no longer works",
        f"{'These personal access tokens' if many else 'This personal access token'} of yours became inactive "
        f"after a change by {changed_by}: requests made with {'them' if many else 'it'} are refused from now on."
        f"\n\n{lines}\n\n"
        f"What will help:\n{tips}",
    )


# The tasks keep the names they were queued under before they moved here.
@shared_task(name="tokens.tasks.notify_token_owner", **RETRY)
def notify_token_owner(token_id: int, event: str, detail: str = "") -> bool:
    return send_token_notification(token_id, event, detail)


@shared_task(name="tokens.tasks.notify_token_issued", **RETRY)
def notify_token_issued(token_id: int, event: str, issuer: str, ip: str, prefix: str = "") -> bool:
    return send_issued_notice(token_id, event, issuer, ip, prefix)


@shared_task(name="tokens.tasks.notify_unused_tokens", **RETRY)
def notify_unused_tokens(owner_id: int, tokens_ending: list, days: int) -> bool:
    return send_unused_notice(owner_id, [tuple(item) for item in tokens_ending], days)


@shared_task(name="tokens.tasks.notify_unused_ended", **RETRY)
def notify_unused_ended(owner_id: int, token_ids: list[int], days: int) -> bool:
    return send_unused_ended_notice(owner_id, token_ids, days)


@shared_task(name="tokens.tasks.notify_revoked_tokens", **RETRY)
def notify_revoked_tokens(owner_id: int, token_ids: list[int]) -> bool:
    return send_revoked_notice(owner_id, token_ids)


@shared_task(name="tokens.tasks.notify_inactivated_tokens", **RETRY)
def notify_inactivated_tokens(owner_id: int, token_ids: list[int], changed_by: str) -> bool:
    return send_inactivated_notice(owner_id, token_ids, changed_by)


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
    ):
        return False
    try:
        with transaction.atomic():
            ExpiryReminder.objects.create(token=token, days_before=days_before, expires_at=token.expires_at)
            webhook_event_emit(token, WebhookEvent.EXPIRING, {"daysBefore": days_before})
            if not token.owner.email:
                return False
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


def expired_tokens_announce(now: datetime | None = None) -> int:
    """Send ``token.expired`` for the tokens that expired in the last day, once
    each (the reminder sweep calls it); only where an endpoint wants it."""
    now = now or timezone.now()
    tenants = {
        endpoint.tenant_id
        for endpoint in WebhookEndpoint.objects.filter(is_active=True)
        if WebhookEvent.EXPIRED in endpoint.events
    }
    expired = PersonalAccessToken.objects.filter(
        tenant_id__in=tenants, status=TokenStatus.ACTIVE, expires_at__lte=now, expires_at__gt=now - timedelta(days=1)
    ).exclude(
        Exists(ExpiryReminder.objects.filter(token=OuterRef("pk"), days_before=0, expires_at=OuterRef("expires_at")))
    )
    announced = 0
    for token in expired.select_related("owner", "application").iterator(chunk_size=BATCH_SIZE):
        try:
            with transaction.atomic():
                ExpiryReminder.objects.create(token=token, days_before=0, expires_at=token.expires_at)
                webhook_event_emit(token, WebhookEvent.EXPIRED)
        except IntegrityError:
            continue  # another sweep announced it
        announced += 1
    return announced


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
                    f"{admin.tenant.name}: {counted(len(expiring), 'personal access token')} "
                    f"{'expires' if len(expiring) == 1 else 'expire'} this week",
                    "\n".join(lines) + f"\n\nOverview: {settings.PUBLIC_URL}/admin/tokens/personalaccesstoken/"
                    "?expiring=7\n",
                    settings.DEFAULT_FROM_EMAIL,
                    [admin.email],
                )
        except IntegrityError:
            continue
        sent += 1
    return sent


def approval_digests_send(now: datetime | None = None) -> int:
    """Send each approver, at most once a day, the requests of their tenant
    that await approval (``tokens.selectors.token_approvers``), oldest first;
    nobody is sent their own requests. Returns the digests sent."""
    now = now or timezone.now()
    pending = (
        PersonalAccessToken.objects.filter(status=TokenStatus.ACTIVE, approval=Approval.PENDING, expires_at__gt=now)
        .select_related("owner", "application", "tenant")
        .order_by("approval_requested_at", "id")
    )
    by_tenant: dict[int, list[PersonalAccessToken]] = {}
    for token in pending[:5000]:
        by_tenant.setdefault(token.tenant_id, []).append(token)
    sent = 0
    for tokens in by_tenant.values():
        tenant = tokens[0].tenant
        for approver in token_approvers(tenant.pk).exclude(email=""):
            theirs = [t for t in tokens if t.owner_id != approver.pk]
            if not theirs:
                continue
            lines = [
                f"- {t.name} ({t.display_prefix}…) of {t.owner.get_full_name() or t.owner.username}, "
                f"{t.application.name if t.application else 'administrative'}, "
                f"asked {t.approval_requested_at:%Y-%m-%d %H:%M} UTC"
                for t in theirs[:200]
            ]
            try:
                with transaction.atomic():
                    ApprovalDigest.objects.create(recipient=approver, day=now.date())
                    send_mail(
                        f"{tenant.name}: {len(theirs)} personal access token{'s' if len(theirs) != 1 else ''} "
                        "await your approval",
                        "\n".join(lines) + f"\n\nApprove or deny them: {settings.PUBLIC_URL}"
                        "/admin/tokens/personalaccesstoken/?status=pending\n",
                        settings.DEFAULT_FROM_EMAIL,
                        [approver.email],
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
