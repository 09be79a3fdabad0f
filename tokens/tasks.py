"""Celery tasks: take ids, reload, call one service; idempotent and retried
on transient failures (``core.tasks.RETRY``). Without REDIS_URL they run
in-process (eagerly). The tasks queued on the request path live beside what
they run (``notifications``); importing it here registers them with the worker."""

from celery import shared_task

from core.tasks import RETRY
from tokens import authcache, maintenance, notifications, oauth
from tokens.notifications import (  # noqa: F401 - registered with the worker
    note_token_address,
    notify_expiry_shortened,
    notify_inactivated_tokens,
    notify_revoked_tokens,
    notify_token_issued,
    notify_token_owner,
    notify_unused_ended,
    notify_unused_tokens,
)
from tokens.refusals import note_refused_address  # noqa: F401 - registered with the worker
from tokens.reuse import handle_secret_reuse  # noqa: F401 - registered with the worker
from tokens.usage import usage_flush_from_redis
from tokens.webhooks import deliver_webhooks, sweep_webhook_deliveries, webhook_deliveries_prune  # noqa: F401


@shared_task(**RETRY)
def send_expiry_reminder(token_id: int, days_before: int) -> bool:
    return notifications.expiry_reminder_send(token_id, days_before)


@shared_task(**RETRY)
def sweep_expiry_reminders() -> int:
    """Queue every reminder that is due (beat: every 15 minutes)."""
    queued = 0
    for token_id, days in notifications.expiry_reminders_due():
        send_expiry_reminder.delay(token_id, days)
        queued += 1
    notifications.expired_tokens_announce()
    return queued


@shared_task(**RETRY)
def send_admin_digests() -> int:
    return notifications.admin_digests_send()


@shared_task(**RETRY)
def send_approval_digests() -> int:
    return notifications.approval_digests_send()


@shared_task(**RETRY)
def flush_usage() -> int:
    return usage_flush_from_redis()


@shared_task(**RETRY)
def relay_invalidations() -> int:
    return authcache.invalidations_relay()


@shared_task(**RETRY)
def refresh_dashboard_figures() -> int:
    return maintenance.dashboard_figures_refresh()


@shared_task(**RETRY)
def reconcile_inactive_marks() -> int:
    return maintenance.inactive_marks_reconcile()


@shared_task(**RETRY)
def sweep_idle_tokens() -> dict:
    from tokens.idle import idle_tokens_sweep

    result = idle_tokens_sweep()
    if result["more"]:  # a run stops at its limit: the rest follows now, not in an hour
        sweep_idle_tokens.apply_async(countdown=1)
    return result


@shared_task(**RETRY)
def housekeeping() -> dict:
    return {
        "embed_sessions": maintenance.embed_sessions_prune(),
        "audit_events": maintenance.audit_events_prune(),
        "revoked_access_tokens": oauth.prune_revoked_access_tokens(),
        "webhook_deliveries": webhook_deliveries_prune(),
        "rotated_secrets": maintenance.rotated_secrets_prune(),
    }
