"""Emails to token owners about security events."""

import logging

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction

from core.tasks import RETRY
from tokens.models import PersonalAccessToken, RevocationCause

logger = logging.getLogger(__name__)

SUBJECTS = {
    "revoked": "Your personal access token “{name}” was revoked",
    "reported_leaked": "Your personal access token “{name}” was reported leaked and revoked",
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
}


def _after_commit(task, send_now, *args) -> None:
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
    _after_commit(notify_token_owner, send_token_notification, token_id, event, detail)


def send_token_notification(token_id: int, event: str, detail: str = "") -> bool:
    """Email the owner of a token about ``event``; return False if there is nobody to tell."""
    token = PersonalAccessToken.objects.select_related("owner", "application", "revoked_by").filter(pk=token_id).first()
    if token is None or not token.owner.email or event not in SUBJECTS:
        return False
    revoker = REVOKERS.get(token.revocation_cause, REVOKERS[RevocationCause.OPERATOR])
    if token.revocation_reason and not detail and event == "revoked":
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
    _after_commit(notify_expiry_shortened, send_expiry_shortened_notice, owner_id, token_ids, max_days)


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
