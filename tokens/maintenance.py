"""Keeping derived data true and old data gone: the dashboard's stored
figures, the reconciliation of ``marked_inactive``, and the pruning of
expired embed sessions and old audit events. Idempotent and batched."""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from iam.models import AuditEvent
from tenants.models import Tenant
from tokens.models import (
    EmbedSession,
    PersonalAccessToken,
    RotatedSecret,
    TenantTokenFigures,
    TokenStatus,
)
from tokens.selectors import inactive_condition, tenant_figures

logger = logging.getLogger(__name__)

BATCH_SIZE = 5000
TENANTS_PER_FIGURES_BATCH = 10
RECONCILE_ID_RANGE = 100_000


def embed_sessions_prune(now: datetime | None = None) -> int:
    """Delete expired embed sessions, in batches."""
    return _delete_in_batches(EmbedSession.objects.filter(expires_at__lte=now or timezone.now()))


def audit_events_prune(now: datetime | None = None) -> int:
    """Delete audit events older than AUDIT_RETENTION_DAYS, in batches."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.AUDIT_RETENTION_DAYS)
    return _delete_in_batches(AuditEvent.objects.filter(occurred_at__lt=cutoff))


# How long a replaced secret is kept to recognise its reuse once its token can
# no longer be used anyway (ended, or expired): reuse then ends nothing.
ROTATED_SECRET_AFTERLIFE = timedelta(days=30)


def rotated_secrets_prune(now: datetime | None = None) -> int:
    """Forget the replaced secrets of tokens ended or expired more than ``ROTATED_SECRET_AFTERLIFE`` ago."""
    cutoff = (now or timezone.now()) - ROTATED_SECRET_AFTERLIFE
    over = (
        Q(token__status=TokenStatus.REVOKED, token__revoked_at__lt=cutoff)
        | Q(token__status=TokenStatus.DELETED, token__deleted_at__lt=cutoff)
        | Q(token__expires_at__lt=cutoff)
    )
    return _delete_in_batches(RotatedSecret.objects.filter(over))


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
        logger.warning("Corrected the inactive marks of %d tokens: a change bypassed the services.", corrected)
    return corrected
