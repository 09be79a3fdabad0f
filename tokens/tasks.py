"""Celery tasks: take ids, reload, call one service. Without REDIS_URL they
run in-process (eagerly) when the transaction that enqueued them commits."""

from celery import shared_task

from tokens.notifications import send_token_notification


@shared_task(autoretry_for=(ConnectionError, TimeoutError, OSError), retry_backoff=True, max_retries=5)
def notify_token_owner(token_id: int, event: str, detail: str = "") -> bool:
    return send_token_notification(token_id, event, detail)
