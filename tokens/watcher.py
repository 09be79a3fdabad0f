"""What identity and tenancy changes do to tokens: the tokens app's watcher of
``core.changes``, registered in ``TokensConfig.ready``.

Tenancy and identity never name tokens: they say what changed (an
``IdentityChange``), and this module works out what it does to the tokens it
can reach, in the change's transaction: tokens that become inactive or active
again (audited, the console's inactive mark kept in step, the owners of those
made inactive told), expiries brought within a tighter lifetime (audited,
owners told), and what live tokens gain or lose when a role's codes change.
"""

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import QuerySet
from django.utils import timezone

from core.changes import ChangeKind, ChangeReport, IdentityChange
from iam.audit import audit_record, audit_record_many
from iam.models import AuditAction, Role
from tenants.models import Tenant
from tokens.models import PersonalAccessToken, TokenStatus
from tokens.notifications import enqueue_expiry_shortened_notice, enqueue_inactivated_notice
from tokens.rules import TokenState, token_states
from tokens.services import inactive_mark_set

# The changes that can make tokens inactive or active again.
VALIDITY_KINDS = frozenset(
    {
        ChangeKind.PATS_SWITCH,
        ChangeKind.ROLE_ELIGIBILITY,
        ChangeKind.GRANT_ADDED,
        ChangeKind.GRANT_REMOVED,
        ChangeKind.PAT_RIGHT,
        ChangeKind.ACTIVATION,
        ChangeKind.TENANT_MOVE,
    }
)
CLAMP_BATCH = 1000


@dataclass(frozen=True)
class ValidityChange:
    token_id: int
    before: TokenState
    after: TokenState


@dataclass(frozen=True)
class ValidityEffect:
    """Tokens a change made inactive, or active again."""

    changes: list[ValidityChange]

    @property
    def tokens_affected(self) -> int:
        return len(self.changes)

    @property
    def inactivated(self) -> list[ValidityChange]:
        return [change for change in self.changes if not change.after.is_usable]

    @property
    def tokens_reactivated(self) -> int:
        return len(self.changes) - len(self.inactivated)

    @property
    def needs_confirmation(self) -> bool:
        return bool(self.inactivated)


@dataclass(frozen=True)
class ExpiryShortening:
    token_id: int
    before: datetime
    after: datetime


@dataclass(frozen=True)
class LifetimeEffect:
    """Expiries brought within a tenant's lower maximum lifetime."""

    shortened: list[ExpiryShortening]
    tokens_reactivated = 0

    @property
    def tokens_affected(self) -> int:
        return len(self.shortened)

    @property
    def needs_confirmation(self) -> bool:
        return bool(self.shortened)


@dataclass(frozen=True)
class PermissionChange:
    """A role's permission codes changed: what the live tokens granting it gain and lose."""

    role: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    live_tokens: int
    tokens_reactivated = 0

    @property
    def tokens_affected(self) -> int:
        return self.live_tokens

    @property
    def needs_confirmation(self) -> bool:
        return bool(self.live_tokens)


def tokens_reached(change: IdentityChange) -> QuerySet[PersonalAccessToken]:
    """The tokens ``change`` can reach: those of its tenant, application,
    role and owner, as far as it names them."""
    tokens = PersonalAccessToken.objects.all()
    if change.tenant_id is not None:
        tokens = tokens.filter(tenant_id=change.tenant_id)
    if change.application_id is not None:
        tokens = tokens.filter(application_id=change.application_id)
    if change.role_id is not None:
        tokens = tokens.filter(roles=change.role_id)
    if change.user_id is not None:
        tokens = tokens.filter(owner_id=change.user_id)
    return tokens


def _live(tokens: QuerySet[PersonalAccessToken], now: datetime) -> QuerySet[PersonalAccessToken]:
    return tokens.filter(status=TokenStatus.ACTIVE, expires_at__gt=now)


class TokenWatcher:
    def before(self, change: IdentityChange):
        now = timezone.now()
        if change.what in VALIDITY_KINDS:
            return token_states(_live(tokens_reached(change), now), now)
        if change.what == ChangeKind.TENANT_POLICY:
            return Tenant.objects.get(pk=change.tenant_id).max_token_lifetime_days
        if change.what == ChangeKind.ROLE_PERMISSIONS:
            role = Role.objects.get(pk=change.role_id)
            return set(role.permissions or ()), _live(tokens_reached(change), now).count()
        return None

    def after(self, change: IdentityChange, seen) -> list:
        if change.what in VALIDITY_KINDS:
            return [ValidityEffect(_validity_record(change, seen))]
        if change.what == ChangeKind.TENANT_POLICY:
            tenant = Tenant.objects.get(pk=change.tenant_id)
            if tenant.max_token_lifetime_days < seen:
                return [LifetimeEffect(_clamp_to_lifetime(tenant, change))]
        if change.what == ChangeKind.ROLE_PERMISSIONS:
            old, live = seen
            role = Role.objects.get(pk=change.role_id)
            new = set(role.permissions or ())
            if new != old:
                return [PermissionChange(str(role), tuple(sorted(new - old)), tuple(sorted(old - new)), live)]
        return []

    def confirmation(self, report: ChangeReport, *, sees_tokens: bool) -> dict:
        inactivated = [change for effect in report.of_type(ValidityEffect) for change in effect.inactivated]
        shortened = [item for effect in report.of_type(LifetimeEffect) for item in effect.shortened]
        ids = [change.token_id for change in inactivated] + [item.token_id for item in shortened]
        tokens = PersonalAccessToken.objects.filter(pk__in=ids).select_related("owner", "application", "tenant")
        tokens = {token.pk: token for token in tokens}
        rows = [(tokens[change.token_id], change.after.reason_text) for change in inactivated]
        summary: list[tuple[str, str, int]] = []
        if not sees_tokens:
            # How many, per tenant and reason, only.
            counts = Counter((token.tenant.name, reason) for token, reason in rows)
            summary = [(tenant, reason, count) for (tenant, reason), count in sorted(counts.items())]
        return {
            "rows": [] if summary else rows,
            "summary": summary,
            "count": len(rows),
            "shortened": [(tokens[item.token_id], item.before, item.after) for item in shortened],
            "permission_changes": [change for change in report.of_type(PermissionChange) if change.live_tokens],
        }


def _validity_record(change: IdentityChange, before: dict[int, TokenState]) -> list[ValidityChange]:
    """Which of the tokens seen live before the write changed usability;
    one audit event each, and the console's inactive mark kept in step."""
    now = timezone.now()
    after = token_states(PersonalAccessToken.objects.filter(pk__in=before), now)
    rows = list(PersonalAccessToken.objects.filter(pk__in=before).values_list("pk", "tenant_id", "owner_id"))
    tenants = {pk: tenant_id for pk, tenant_id, _ in rows}
    owners = {pk: owner_id for pk, _, owner_id in rows}
    changed: list[ValidityChange] = []
    for token_id, old in before.items():
        new = after[token_id]
        if old.is_usable == new.is_usable:
            continue
        changed.append(ValidityChange(token_id, old, new))
        audit_record(
            action=AuditAction.TOKEN_REACTIVATED if new.is_usable else AuditAction.TOKEN_INACTIVATED,
            tenant_id=tenants[token_id],
            actor=change.actor,
            token_id=token_id,
            ip=change.ip,
            changes={"cause": change.cause},
            reason=new.reason_text,
        )
    inactive_mark_set([c.token_id for c in changed if c.after.inactive_reasons], marked=True)
    inactive_mark_set([c.token_id for c in changed if not c.after.inactive_reasons], marked=False)
    _owners_told_of_inactivation(change, [c.token_id for c in changed if not c.after.is_usable], owners)
    return changed


def _owners_told_of_inactivation(change: IdentityChange, token_ids: list[int], owners: dict[int, int]) -> None:
    """One e-mail per owner for this change (not one per token), after commit:
    a rolled-back or unconfirmed change tells nobody."""
    by_owner: dict[int, list[int]] = {}
    for token_id in token_ids:
        by_owner.setdefault(owners[token_id], []).append(token_id)
    if not by_owner:
        return
    actor = change.actor
    changed_by = (
        f"{actor.get_full_name() or actor.username}, an administrator"
        if actor is not None
        else "an operator of the service"
    )
    for owner_id, ids in by_owner.items():
        enqueue_inactivated_notice(owner_id, ids, changed_by)


def _clamp_to_lifetime(tenant: Tenant, change: IdentityChange) -> list[ExpiryShortening]:
    """Bring the expiry of the tenant's live tokens within its maximum lifetime
    (``now + max``), as a tighter policy asks. Each shortened token is
    audited, and each owner told once. Batched: a batch's expiries are one
    UPDATE and its events one INSERT."""
    now = timezone.now()
    ceiling = now + timedelta(days=tenant.max_token_lifetime_days)
    beyond = PersonalAccessToken.objects.filter(tenant=tenant, status=TokenStatus.ACTIVE, expires_at__gt=ceiling)
    shortened: list[ExpiryShortening] = []
    rows = list(beyond.order_by("pk").values_list("pk", "owner_id", "expires_at"))
    for start in range(0, len(rows), CLAMP_BATCH):
        batch = rows[start : start + CLAMP_BATCH]
        PersonalAccessToken.objects.filter(pk__in=[pk for pk, _, _ in batch]).update(expires_at=ceiling)
        audit_record_many(
            action=AuditAction.TOKEN_EXPIRY_SHORTENED,
            tenant_id=tenant.pk,
            actor=change.actor,
            ip=change.ip,
            reason=f"The tenant's maximum token lifetime is now {tenant.max_token_lifetime_days} days.",
            per_token={pk: {"expires_at": [old.isoformat(), ceiling.isoformat()]} for pk, _, old in batch},
        )
        shortened += [ExpiryShortening(pk, old, ceiling) for pk, _, old in batch]
    owners: dict[int, list[int]] = {}
    for pk, owner_id, _ in rows:
        owners.setdefault(owner_id, []).append(pk)
    for owner_id, token_ids in owners.items():
        enqueue_expiry_shortened_notice(owner_id, token_ids, tenant.max_token_lifetime_days)
    return shortened
