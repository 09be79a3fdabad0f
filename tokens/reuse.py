"""A rotated-out secret presented after its grace period: someone else holds it.

The request that presented it is refused like any other failure; ending the
token (its current secret too) happens in the background, so the request
path still writes nothing (``services.token_reuse_end``, idempotent).
"""

from celery import shared_task

from core.tasks import RETRY
from tokens.notifications import enqueue_after_commit
from tokens.services import token_reuse_end


def reuse_report(secret_id: int, ip: str | None) -> None:
    # Calling the task itself runs it in-process, if the broker cannot be reached.
    enqueue_after_commit(handle_secret_reuse, handle_secret_reuse, secret_id, ip)


@shared_task(**RETRY)
def handle_secret_reuse(secret_id: int, ip: str | None) -> bool:
    return token_reuse_end(secret_id=secret_id, ip=ip)
