"""Writing the audit trail. Callers run inside the transaction of the change."""

from collections.abc import Callable
from typing import Any

from iam.models import AuditAction, AuditEvent, User


def actor_label(actor: User | None) -> str:
    return actor.username if actor is not None else "system"


# Called with every batch of events recorded, in the transaction that records
# them: how the layers above learn of changes (tokens sends webhooks) without
# identity importing them.
_listeners: list[Callable[[list[AuditEvent]], None]] = []


def audit_listener_register(listener: Callable[[list[AuditEvent]], None]) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def _told(events: list[AuditEvent]) -> None:
    for listener in _listeners:
        listener(events)


def audit_record(
    *,
    action: AuditAction,
    tenant_id: int | None,
    actor: User | None,
    token_id: int | None = None,
    ip: str | None = None,
    changes: dict[str, Any] | None = None,
    reason: str = "",
    label: str | None = None,
) -> AuditEvent:
    """Record one event; ``actor`` None means an operator command or the system."""
    event = AuditEvent.objects.create(
        action=action,
        tenant_id=tenant_id,
        actor=actor,
        actor_label=label or actor_label(actor),
        token_id=token_id,
        ip=ip,
        changes=changes or {},
        reason=reason[:500],
    )
    _told([event])
    return event


def audit_record_many(
    *,
    action: AuditAction,
    tenant_id: int | None,
    actor: User | None,
    per_token: dict[int, dict[str, Any]],
    ip: str | None = None,
    reason: str = "",
    label: str | None = None,
) -> None:
    """Record one event per token (with its own changes) in one INSERT, for
    changes that reach many tokens at once."""
    events = AuditEvent.objects.bulk_create(
        [
            AuditEvent(
                action=action,
                tenant_id=tenant_id,
                actor=actor,
                actor_label=label or actor_label(actor),
                token_id=token_id,
                ip=ip,
                changes=changes,
                reason=reason[:500],
            )
            for token_id, changes in per_token.items()
        ],
        batch_size=500,
    )
    _told(events)
