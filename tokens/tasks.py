"""Celery tasks: take ids, reload, call one service; idempotent and retried
on transient failures. Without REDIS_URL they run in-process (eagerly)."""

from celery import shared_task
from django.db import OperationalError

from tokens import background, oauth
from tokens.notifications import send_expiry_shortened_notice, send_token_notification
from tokens.usage import usage_flush_from_redis

TRANSIENT = (ConnectionError, TimeoutError, OSError, OperationalError)
RETRY = {"autoretry_for": TRANSIENT, "retry_backoff": True, "retry_backoff_max": 300, "max_retries": 8}


@shared_task(**RETRY)
def notify_token_owner(token_id: int, event: str, detail: str = "") -> bool:
    return send_token_notification(token_id, event, detail)


@shared_task(**RETRY)
def notify_expiry_shortened(owner_id: int, token_ids: list[int], max_days: int) -> bool:
    return send_expiry_shortened_notice(owner_id, token_ids, max_days)


@shared_task(**RETRY)
def send_expiry_reminder(token_id: int, days_before: int) -> bool:
    return background.expiry_reminder_send(token_id, days_before)


@shared_task(**RETRY)
def sweep_expiry_reminders() -> int:
    """Queue every reminder that is due (beat: every 15 minutes)."""
    queued = 0
    for token_id, days in background.expiry_reminders_due():
        send_expiry_reminder.delay(token_id, days)
        queued += 1
    return queued


@shared_task(**RETRY)
def send_admin_digests() -> int:
    return background.admin_digests_send()


@shared_task(**RETRY)
def note_token_address(token_id: int, ip: str) -> bool:
    return background.token_address_note(token_id, ip)


@shared_task(**RETRY)
def flush_usage() -> int:
    return usage_flush_from_redis()


@shared_task(**RETRY)
def refresh_dashboard_figures() -> int:
    return background.dashboard_figures_refresh()


@shared_task(**RETRY)
def reconcile_inactive_marks() -> int:
    return background.inactive_marks_reconcile()


@shared_task(**RETRY)
def housekeeping() -> dict:
    return {
        "embed_sessions": background.embed_sessions_prune(),
        "audit_events": background.audit_events_prune(),
        "revoked_access_tokens": oauth.prune_revoked_access_tokens(),
    }
