"""The rules that decide a token's effective state, in one place.

A token's stored status is ACTIVE, REVOKED or DELETED. Whether an ACTIVE
token may be used also depends on time (EXPIRED) and on the rest of the IAM
(INACTIVE): both are derived here on every evaluation, never written by a
job, so they change back by themselves when the cause goes away. Its stored
``approval`` (a user administrator's decision) makes it PENDING until
approved, or DENIED for good.

``evaluate`` is a pure function of ``TokenFacts``; ``load_facts`` gathers
those facts for many tokens in four queries, ``lookup`` for one in one.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import models
from django.utils import timezone

from iam.models import Role, RoleGrant, User
from tenants.models import TenantApplication
from tokens.models import Approval, PersonalAccessToken, TokenStatus


class EffectiveStatus(models.TextChoices):
    ACTIVE = "active"
    PENDING = "pending", "Awaiting approval"
    EXPIRED = "expired"
    INACTIVE = "inactive"
    DENIED = "denied"
    REVOKED = "revoked"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class RoleFacts:
    id: int
    code: str
    name: str
    application_id: object
    pat_eligible: bool
    held_by_owner: bool
    permissions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TokenFacts:
    status: str
    expires_at: datetime
    application_id: object
    owner_is_active: bool
    owner_can_create_pats: bool
    owner_in_token_tenant: bool
    application_allows_pats: bool
    roles: tuple[RoleFacts, ...]
    application_name: str = ""
    approval: str = Approval.NOT_NEEDED


@dataclass(frozen=True)
class InactiveReason:
    """Why a token is inactive: ``message`` for administrators and the audit
    trail, ``owner_message`` and ``advice`` (what will actually help) for its owner."""

    code: str
    message: str
    owner_message: str
    advice: str
    owner_can_fix: bool = False  # True when an edit of the token can make it active again


ASK_USER_ADMIN = "Ask a user administrator of your tenant"
ASK_APP_ADMIN = "Ask an application administrator"
EDITING_WILL_NOT_HELP = "Editing the token will not help."


def _reason(code: str, **names: str) -> InactiveReason:
    role, application = names.get("role", ""), names.get("application", "")
    texts = {
        "owner_deactivated": (
            "The owner's account is deactivated.",
            "Your account is deactivated.",
            f"{ASK_USER_ADMIN} to reactivate it.",
        ),
        "owner_pat_right_removed": (
            "The owner is no longer allowed to use personal access tokens.",
            "You are no longer allowed to use personal access tokens.",
            f"{ASK_USER_ADMIN} to allow it again. {EDITING_WILL_NOT_HELP}",
        ),
        "owner_changed_tenant": (
            "The owner has moved to another tenant.",
            "You have moved to another tenant since this token was made.",
            "It can never be used again: delete it and create a new one.",
        ),
        "application_disallows_pats": (
            "The application no longer allows personal access tokens in this tenant.",
            f"{application} no longer allows personal access tokens in your tenant.",
            f"{ASK_APP_ADMIN} to allow them again. {EDITING_WILL_NOT_HELP}",
        ),
        "role_not_pat_eligible": (
            f"The role “{role}” is no longer available for personal access tokens.",
            f"The role “{role}” is no longer available for personal access tokens.",
            f"Edit the token and leave “{role}” out, or ask an application administrator to make it available again.",
        ),
        "role_not_held": (
            f"The owner no longer holds the role “{role}”.",
            f"You no longer hold the role “{role}”.",
            f"Edit the token and leave “{role}” out, or ask a user administrator to grant it to you again.",
        ),
        "no_roles": (
            "The token grants no permissions.",
            "The token grants no permissions.",
            "Edit the token and choose at least one permission.",
        ),
    }
    message, owner_message, advice = texts[code]
    owner_can_fix = code in ("role_not_pat_eligible", "role_not_held", "no_roles")
    return InactiveReason(code, message, owner_message, advice, owner_can_fix)


@dataclass(frozen=True, slots=True)
class TokenState:
    status: str
    inactive_reasons: tuple[InactiveReason, ...]
    permissions: frozenset[str]

    @property
    def is_usable(self) -> bool:
        return self.status == EffectiveStatus.ACTIVE

    @property
    def reason_text(self) -> str:
        return " ".join(reason.message for reason in self.inactive_reasons)

    @property
    def owner_reason_text(self) -> str:
        return " ".join(reason.owner_message for reason in self.inactive_reasons)

    @property
    def owner_advice(self) -> list[str]:
        """What will help, reason by reason, without repeating itself."""
        return list(dict.fromkeys(reason.advice for reason in self.inactive_reasons))

    @property
    def owner_can_fix(self) -> bool:
        """Whether the owner can make the token active again by editing it."""
        return bool(self.inactive_reasons) and all(reason.owner_can_fix for reason in self.inactive_reasons)


def evaluate(facts: TokenFacts, now: datetime) -> TokenState:
    """Return the effective state and permissions of a token.

    Effective permissions are those of the token's roles that the owner still
    holds, that are still PAT-eligible and that belong to the token's
    application; the token is INACTIVE as soon as any of its roles fails that
    test or any owner or application condition fails, so an administrator's
    change never silently narrows a token: the owner sees why and edits it.
    """
    reasons: list[InactiveReason] = []
    if not facts.owner_is_active:
        reasons.append(_reason("owner_deactivated"))
    if not facts.owner_can_create_pats:
        reasons.append(_reason("owner_pat_right_removed"))
    if not facts.owner_in_token_tenant:
        reasons.append(_reason("owner_changed_tenant"))
    if facts.application_id is not None and not facts.application_allows_pats:
        application = f"“{facts.application_name}”" if facts.application_name else "The application"
        reasons.append(_reason("application_disallows_pats", application=application))
    permissions: set[str] = set()
    for role in facts.roles:
        # A role's application never changes (services and the console keep it), so
        # the roles of a token always belong to the token's application.
        if not role.pat_eligible:
            reasons.append(_reason("role_not_pat_eligible", role=role.name))
        elif not role.held_by_owner:
            reasons.append(_reason("role_not_held", role=role.name))
        else:
            permissions.update(role.permissions)
    if not facts.roles:
        reasons.append(_reason("no_roles"))

    if facts.status == TokenStatus.DELETED:
        status = EffectiveStatus.DELETED
    elif facts.status == TokenStatus.REVOKED:
        status = EffectiveStatus.REVOKED
    elif facts.approval and facts.approval == Approval.DENIED:  # most tokens need no approval: one truth test
        status = EffectiveStatus.DENIED
    elif facts.expires_at <= now:
        status = EffectiveStatus.EXPIRED
    elif facts.approval and facts.approval == Approval.PENDING:
        status = EffectiveStatus.PENDING  # whatever else holds: the owner learns the rest once it is decided
    elif reasons:
        status = EffectiveStatus.INACTIVE
    else:
        status = EffectiveStatus.ACTIVE
    effective = frozenset(permissions) if status == EffectiveStatus.ACTIVE else frozenset()
    return TokenState(status=status, inactive_reasons=tuple(reasons), permissions=effective)


def _role_facts(role: Role, held: bool) -> RoleFacts:
    return RoleFacts(
        id=role.pk,
        code=role.code,
        name=role.name,
        application_id=role.application_id,
        pat_eligible=role.pat_eligible,
        held_by_owner=held,
        permissions=tuple(role.permissions or ()),
    )


def _loaded_application_name(token: PersonalAccessToken) -> str:
    """The application's name if the caller loaded it with the token (no query otherwise)."""
    application = token._state.fields_cache.get("application")
    return application.name if application is not None else ""


def facts_build(
    token: PersonalAccessToken, owner: User, *, application_allows_pats: bool, roles: Iterable[RoleFacts]
) -> TokenFacts:
    """The facts the rules judge a token by, from what a loader read: its owner
    as now, whether its application allows tokens in its tenant, and each of
    its roles with whether the owner still holds it. Every loader ends here
    (``load_facts`` below, ``lookup.load_token_for_authentication``)."""
    return TokenFacts(
        status=token.status,
        expires_at=token.expires_at,
        application_id=token.application_id,
        owner_is_active=owner.is_active,
        owner_can_create_pats=owner.can_create_pats,
        owner_in_token_tenant=owner.tenant_id == token.tenant_id,
        application_allows_pats=application_allows_pats,
        application_name=_loaded_application_name(token),
        approval=token.approval,
        roles=tuple(sorted(roles, key=lambda role: role.code)),
    )


def load_facts(tokens: Iterable[PersonalAccessToken]) -> dict[int, TokenFacts]:
    """Gather the facts of many tokens in four queries, whatever their number.

    Owners, roles, grants and switches are read afresh, never from relations
    cached on the instances, so a change made since they were loaded counts.
    """
    tokens = list(tokens)
    if not tokens:
        return {}
    owners = User.objects.only("id", "is_active", "can_create_pats", "tenant_id").in_bulk(
        {token.owner_id for token in tokens}
    )
    roles_of: dict[int, list[Role]] = {token.pk: [] for token in tokens}
    links = PersonalAccessToken.roles.through.objects.filter(personalaccesstoken_id__in=roles_of).select_related("role")
    for link in links:
        roles_of[link.personalaccesstoken_id].append(link.role)
    held = set(
        RoleGrant.objects.filter(
            user_id__in=owners,
            role_id__in={role.pk for roles in roles_of.values() for role in roles},
        ).values_list("user_id", "role_id")
    )
    allowed = set(
        TenantApplication.objects.filter(
            allows_pats=True,
            tenant_id__in={token.tenant_id for token in tokens},
            application_id__in={token.application_id for token in tokens if token.application_id},
        ).values_list("tenant_id", "application_id")
    )
    facts = {}
    for token in tokens:
        facts[token.pk] = facts_build(
            token,
            owners[token.owner_id],
            application_allows_pats=(token.tenant_id, token.application_id) in allowed,
            roles=[_role_facts(role, (token.owner_id, role.pk) in held) for role in roles_of[token.pk]],
        )
    return facts


def token_states(tokens: Iterable[PersonalAccessToken], now: datetime | None = None) -> dict[int, TokenState]:
    """Return the effective state of each token, keyed by id."""
    now = now or timezone.now()
    return {token_id: evaluate(facts, now) for token_id, facts in load_facts(tokens).items()}


def token_state(token: PersonalAccessToken, now: datetime | None = None) -> TokenState:
    return token_states([token], now)[token.pk]


# "Expires soon": the last fifth of a token's lifetime, but never more than a
# week. A fixed week alone flags a fresh 7-day token from its first minute, so
# the warning would mean nothing; a fraction alone would warn a yearly token
# two months ahead.
EXPIRES_SOON_FRACTION = 0.2
EXPIRES_SOON_AT_MOST = timedelta(days=7)


def expires_soon(*, created_at: datetime, expires_at: datetime, now: datetime) -> bool:
    """Return whether a token that lives from ``created_at`` to ``expires_at``
    should be flagged at ``now`` as expiring soon: it has not expired yet and
    less than EXPIRES_SOON_FRACTION of its lifetime, or less than
    EXPIRES_SOON_AT_MOST, remains (whichever is smaller)."""
    remaining = expires_at - now
    if remaining <= timedelta(0):
        return False
    window = min((expires_at - created_at) * EXPIRES_SOON_FRACTION, EXPIRES_SOON_AT_MOST)
    return remaining <= window
