"""Every write to a personal access token goes through this module.

Each service checks the current state, refuses an illegal move with a domain
error (``core.errors``), and writes its audit event in the same
transaction as the change.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import DomainError, IllegalTransition, NameTaken, NotPermitted, ValidationFailed
from core.networks import networks_normalized, networks_within
from core.ratelimit import rate_limit_enforce
from core.text import whitespace_collapsed
from iam.audit import actor_label as actor_label_of
from iam.audit import audit_record
from iam.models import AuditAction, AuditEvent, Role, User
from iam.selectors import (
    roles_held_for_tokens,
    user_administers_tenant_users,
    user_holds_administrator_role,
    user_is_main_administrator,
)
from tenants.models import Application, Tenant, TenantApplication
from tokens import keys
from tokens.credentials import credential_label
from tokens.models import (
    Approval,
    IntegrationCredential,
    PersonalAccessToken,
    RevocationCause,
    RotatedSecret,
    TokenKind,
    TokenStatus,
)
from tokens.notifications import enqueue_issued_notice, enqueue_revoked_notice, enqueue_token_notification
from tokens.rules import EffectiveStatus, token_state
from tokens.selectors import revoked_tokens_of, token_name_taken

NAME_MAX_LENGTH = 100
PURPOSE_MAX_LENGTH = 500
MAX_GRACE = timedelta(hours=24)  # how long a regenerated token's old secret may keep working
MIN_LIFETIME = timedelta(days=1)
# Forms and clients compute "one day ahead" a moment before we check it.
EXPIRY_LEEWAY = timedelta(minutes=5)


@dataclass(frozen=True)
class IssuedToken:
    """A freshly created token and its plaintext, which exists nowhere else."""

    token: PersonalAccessToken
    plaintext: str


def token_creation_limit(who: str) -> None:
    """Seed 000's limit: at most TOKEN_CREATIONS_PER_MINUTE token creations a
    minute per user (``"user:<id>"``) or integration credential
    (``"credential:<id>"``). Raises RateLimited (429 with Retry-After).

    Applied where requests come in (pages, management and embedding APIs), not
    in ``token_create``, so operators' commands and bulk scripts are not limited.
    """
    rate_limit_enforce(
        f"token-creations:{who}", limit=settings.TOKEN_CREATIONS_PER_MINUTE, window=60, what="token creations"
    )


def _lock(token: PersonalAccessToken) -> PersonalAccessToken:
    return PersonalAccessToken.objects.select_for_update().select_related("owner", "tenant").get(pk=token.pk)


def _clean_text(value: object, field: str, what: str, max_length: int, errors: dict[str, list[str]]) -> str:
    """``value`` with its whitespace collapsed, or an error on ``field`` if it is not short printable text."""
    if not isinstance(value, str):
        errors[field] = [f"Give the {what} as text."]
        return ""
    value = whitespace_collapsed(value)
    if len(value) > max_length:
        errors[field] = [f"A {what} has at most {max_length} characters."]
    elif not value.isprintable():
        errors[field] = [f"A {what} cannot contain control characters."]
    return value


def _clean_name(name: object, errors: dict[str, list[str]]) -> str:
    if not isinstance(name, str) or not name.strip():
        errors["name"] = ["Enter a token name."]
        return ""
    return _clean_text(name, "name", "token name", NAME_MAX_LENGTH, errors)


def _clean_purpose(purpose: object, errors: dict[str, list[str]]) -> str:
    return "" if purpose is None else _clean_text(purpose, "purpose", "purpose", PURPOSE_MAX_LENGTH, errors)


def _clean_networks(networks: object, tenant: Tenant, errors: dict[str, list[str]]) -> list[str]:
    """A token's allowlist: valid ranges, each within the tenant's (a token's list only narrows it)."""
    normalized, problems = networks_normalized(networks if networks is not None else [])
    outside = networks_within(normalized, tenant.allowed_networks) if not problems else []
    if outside:
        problems.append(
            f"Outside your tenant's allowed networks ({', '.join(tenant.allowed_networks)}): {', '.join(outside)}."
        )
    if problems:
        errors["allowed_networks"] = problems
    return normalized


def _check_expiry(expires_at: object, tenant: Tenant, now: datetime, errors: dict[str, list[str]]) -> None:
    if not isinstance(expires_at, datetime) or timezone.is_naive(expires_at):
        errors["expires_at"] = ["Enter an expiry date and time with a time zone."]
        return
    max_days = tenant.max_token_lifetime_days
    if expires_at < now + MIN_LIFETIME - EXPIRY_LEEWAY:
        errors["expires_at"] = ["The expiry must be at least one day ahead."]
    elif expires_at > now + timedelta(days=max_days) + EXPIRY_LEEWAY:
        errors["expires_at"] = [f"The expiry can be at most {max_days} days ahead."]


def token_name_taken_message(name: str, owner: User | None = None) -> str:
    """Said to the owner, or (``owner`` given) about the owner to whoever acts for them."""
    if owner is None:
        return f"You already have a token named “{name}”."
    return f"{owner.get_username()} already has a token named “{name}”."


def _invalid(errors: dict[str, list[str]], name_taken: bool) -> ValidationFailed:
    """The error for ``errors``: 409 when the only problem is a name in use, 400 with every problem otherwise."""
    if name_taken and set(errors) == {"name"}:
        return NameTaken(errors, "The name is already in use.")
    return ValidationFailed(errors)


def _resolve_roles(
    owner: User, application: Application | None, role_codes: object, errors: dict[str, list[str]]
) -> list[Role]:
    """Return the roles named by ``role_codes`` if the owner may put them in a token."""
    if not isinstance(role_codes, list | tuple) or not all(isinstance(code, str) for code in role_codes):
        errors["roles"] = ["Give the permissions as a list of role codes."]
        return []
    codes = list(dict.fromkeys(role_codes))
    if not codes:
        errors["roles"] = ["Choose at least one permission."]
        return []
    roles = {role.code: role for role in Role.objects.filter(application=application, code__in=codes)}
    held = set(owner.role_grants.filter(role__in=roles.values()).values_list("role_id", flat=True))
    problems = []
    for code in codes:
        role = roles.get(code)
        if role is None:
            where = f"the application “{application.name}”" if application else "this service"
            problems.append(f"There is no role “{code}” in {where}.")
        elif not role.pat_eligible:
            problems.append(f"The role “{role.name}” is not available for personal access tokens.")
        elif role.pk not in held:
            problems.append(f"You do not hold the role “{role.name}”.")
    if problems:
        errors["roles"] = problems
    return list(roles.values())


def _require_may_hold_tokens(owner: User) -> None:
    if not owner.is_active:
        raise NotPermitted("The account is deactivated.", code="user_inactive")
    if not owner.can_create_pats:
        raise NotPermitted(
            "You are not allowed to create personal access tokens. "
            "Ask a user administrator of your tenant to allow it.",
            code="pat_creation_not_allowed",
        )


def application_allows_pats(tenant: Tenant, application: Application) -> bool:
    return TenantApplication.objects.filter(tenant=tenant, application=application, allows_pats=True).exists()


EMBED_NAME_APPLICATION_MAX = NAME_MAX_LENGTH - len("Embedding ·  · ") - keys.DISPLAY_PREFIX_LENGTH


def embed_token_name(application_name: str, display_prefix: str) -> str:
    """The name of an embedding token: its kind, its application (shortened to
    fit the name's 100 characters) and its display prefix, so two of a user's
    embedding tokens are never named alike."""
    if len(application_name) > EMBED_NAME_APPLICATION_MAX:
        application_name = application_name[: EMBED_NAME_APPLICATION_MAX - 1] + "…"
    return f"Embedding · {application_name} · {display_prefix}"


def _token_insert(
    *,
    owner: User,
    application: Application | None,
    name: str | Callable[[str], str],
    expires_at: datetime,
    roles: list[Role],
    now: datetime,
    purpose: str = "",
    allowed_networks: list[str] | None = None,
    kind: str = TokenKind.PERSONAL,
    embed_session_minutes: int | None = None,
    pending: bool = False,
    named_for: User | None = None,
) -> IssuedToken:
    plaintext = keys.generate()
    if callable(name):  # a name made from the token's display prefix
        name = name(keys.display_prefix(plaintext))
    try:
        with transaction.atomic():
            token = PersonalAccessToken.objects.create(
                owner=owner,
                tenant_id=owner.tenant_id,
                application=application,
                name=name,
                purpose=purpose,
                allowed_networks=allowed_networks or [],
                kind=kind,
                embed_session_minutes=embed_session_minutes,
                approval=Approval.PENDING if pending else Approval.NOT_NEEDED,
                approval_requested_at=now if pending else None,
                created_at=now,
                expires_at=expires_at,
                display_prefix=keys.display_prefix(plaintext),
                digest=keys.digest(plaintext),
                pepper_id=keys.current_pepper_id(),
            )
    except IntegrityError:
        # A concurrent request created the same name between our check and insert.
        raise _invalid({"name": [token_name_taken_message(name, named_for)]}, name_taken=True) from None
    # bulk_create sends no m2m signal: a token nobody has seen yet cannot be in
    # any process's cache, so its roles need not invalidate the tenant's entries.
    links = PersonalAccessToken.roles.through
    links.objects.bulk_create([links(personalaccesstoken=token, role=role) for role in roles])
    return IssuedToken(token=token, plaintext=plaintext)


def _creation_changes(token: PersonalAccessToken, roles: list[Role]) -> dict:
    return {
        "name": token.name,
        **({"purpose": token.purpose} if token.purpose else {}),
        **({"allowed_networks": token.allowed_networks} if token.allowed_networks else {}),
        "kind": token.kind,
        "application": token.application.slug if token.application else None,
        "roles": sorted(role.code for role in roles),
        "expires_at": token.expires_at.isoformat(),
        **({"approval": token.approval} if token.approval else {}),
    }


def _needs_approval(roles: Sequence[Role]) -> bool:
    """Whether a token granting ``roles`` waits for a user administrator (a
    role's "tokens need approval"). Embedding tokens never do: the tenant's
    own integration credential issues them."""
    return any(role.needs_token_approval for role in roles)


def _approval_request_record(token: PersonalAccessToken, actor: User | None, label: str | None, ip) -> None:
    """Audit (and so announce) that ``token`` now waits for approval; the approvers learn it from their digest."""
    audit_record(
        action=AuditAction.TOKEN_APPROVAL_REQUESTED,
        tenant_id=token.tenant_id,
        actor=actor,
        label=label,
        token_id=token.pk,
        ip=ip,
        changes={"roles": sorted(token.roles.filter(needs_token_approval=True).values_list("code", flat=True))},
    )


@transaction.atomic
def token_create(
    *,
    owner: User,
    name: str,
    expires_at: datetime,
    role_codes: Sequence[str],
    application: Application | None = None,
    purpose: str | None = None,
    allowed_networks: list[str] | None = None,
    ip: str | None = None,
    now: datetime | None = None,
    actor: User | None = None,
    actor_label: str | None = None,
) -> IssuedToken:
    """Create a token for ``owner``; return it with its plaintext.

    The owner creates their own tokens; ``actor``/``actor_label`` name someone
    else only for the management API, whose caller checks the tenant's policy
    (``token_issue_for_user``). ``application`` None makes an administrative
    token for this service's API, whose roles must be service roles. Raises
    NotPermitted when the owner may not hold tokens and ValidationFailed with
    per-field messages otherwise.
    """
    now = now or timezone.now()
    _require_may_hold_tokens(owner)
    errors: dict[str, list[str]] = {}
    name = _clean_name(name, errors)
    purpose = _clean_purpose(purpose, errors)
    allowed_networks = _clean_networks(allowed_networks, owner.tenant, errors)
    _check_expiry(expires_at, owner.tenant, now, errors)
    if application is not None and not application_allows_pats(owner.tenant, application):
        errors["application"] = ["This application does not allow personal access tokens in your tenant."]
    roles = _resolve_roles(owner, application, role_codes, errors)
    # Someone acting for the owner (the management API) is told about the owner, not "you".
    named_for = owner if actor_label is not None or (actor is not None and actor.pk != owner.pk) else None
    name_taken = "name" not in errors and token_name_taken(owner, name)
    if name_taken:
        errors["name"] = [token_name_taken_message(name, named_for)]
    if errors:
        raise _invalid(errors, name_taken)

    issued = _token_insert(
        owner=owner,
        application=application,
        name=name,
        purpose=purpose,
        allowed_networks=allowed_networks,
        expires_at=expires_at,
        roles=roles,
        now=now,
        pending=_needs_approval(roles),
        named_for=named_for,
    )
    creator = actor or (owner if actor_label is None else None)
    audit_record(
        action=AuditAction.TOKEN_CREATED,
        tenant_id=issued.token.tenant_id,
        actor=creator,
        label=actor_label,
        token_id=issued.token.pk,
        ip=ip,
        changes=_creation_changes(issued.token, roles),
    )
    if issued.token.approval == Approval.PENDING:
        _approval_request_record(issued.token, creator, actor_label, ip)
    enqueue_issued_notice(
        issued.token.pk,
        "created",
        issuer=_issuer_text(owner, actor, actor_label),
        ip=ip,
        prefix=issued.token.display_prefix,
    )
    return issued


def _issuer_text(owner: User, actor: User | None, actor_label: str | None, *, by_itself: bool = False) -> str:
    """Who issued a secret, as its owner's notice says it."""
    if by_itself:
        return "the token itself (a bearer of its previous secret)"
    if actor is not None and actor.pk != owner.pk:
        return f"{actor_label_of(actor)}, an administrator"
    if actor is None and actor_label is not None:
        return f"the {actor_label}"
    return "you"


@transaction.atomic
def embed_token_issue(
    *,
    credential: IntegrationCredential,
    user: User,
    application: Application,
    session_minutes: int,
    pat_seconds: int,
    ip: str | None = None,
    now: datetime | None = None,
) -> IssuedToken:
    """Issue the embedding token of ``user`` for ``application`` (seed 000).

    It grants all the user's PAT-eligible roles in the application. Issuing
    revokes the pair's previous embedding token in the same transaction: one
    active embedding token per application and user, also under concurrent
    requests (the user's row is locked, and a partial unique index backs it).
    Raises NotPermitted (403) when the user has no access to the application.
    """
    now = now or timezone.now()
    if user.tenant_id != credential.tenant_id:
        raise NotPermitted("The user is not in the credential's tenant.", code="user_not_in_tenant")
    user = User.objects.select_for_update().select_related("tenant").get(pk=user.pk)
    if user_holds_administrator_role(user):
        # As through the management API: an integration never holds an administrator's credentials.
        raise NotPermitted("Embedding tokens are not issued for administrators.", code="owner_is_administrator")
    # Nobody approves a token issued at every portal sign-in: it carries only roles that need no approval.
    roles = list(
        roles_held_for_tokens(user).filter(application=application, needs_token_approval=False).order_by("code")
    )
    if not (user.is_active and user.can_create_pats and application_allows_pats(user.tenant, application) and roles):
        raise NotPermitted("The user does not have access to this application.", code="no_application_access")
    max_seconds = user.tenant.max_token_lifetime_days * 86400
    if pat_seconds > max_seconds:
        raise ValidationFailed({"patExpiry": [f"At most {max_seconds} seconds in this tenant."]})
    label = credential_label(credential)
    previous = PersonalAccessToken.objects.filter(
        owner=user, application=application, kind=TokenKind.EMBED, status=TokenStatus.ACTIVE
    )
    for old in previous:
        token_revoke(
            token=old,
            actor=None,
            cause=RevocationCause.EMBED_REPLACED,
            actor_label=label,
            ip=ip,
            reason="Replaced by a new embedding token.",
            now=now,
        )
    issued = _token_insert(
        owner=user,
        application=application,
        name=lambda prefix: embed_token_name(application.name, prefix),
        expires_at=now + timedelta(seconds=pat_seconds),
        roles=roles,
        now=now,
        kind=TokenKind.EMBED,
        embed_session_minutes=session_minutes,
    )
    audit_record(
        action=AuditAction.TOKEN_CREATED,
        tenant_id=user.tenant_id,
        actor=None,
        label=label,
        token_id=issued.token.pk,
        ip=ip,
        changes={**_creation_changes(issued.token, roles), "session_minutes": session_minutes},
    )
    return issued


def token_issue_for_user(
    *,
    owner: User,
    actor: User | None,
    actor_label: str | None,
    application: Application | None,
    name: str,
    expires_at: datetime,
    role_codes: list[str],
    purpose: str | None = None,
    allowed_networks: list[str] | None = None,
    ip: str | None = None,
) -> IssuedToken:
    """Create a token for ``owner`` on an administrator's or integration's
    request. Refused (403) unless the owner's tenant allows it: by Thinkwise's
    rule administrators do not create tokens for users."""
    if application is None:
        raise NotPermitted("Administrative tokens are created by their owners only.", code="administrative_token")
    _require_may_issue_for(owner, actor, "issue")
    return token_create(
        owner=owner,
        application=application,
        name=name,
        expires_at=expires_at,
        role_codes=role_codes,
        purpose=purpose,
        allowed_networks=allowed_networks,
        ip=ip,
        actor=actor,
        actor_label=actor_label,
    )


def _require_may_issue_for(owner: User, actor: User | None, verb: str) -> None:
    """Whether an administrator (``actor``) or an integration (None) may get a
    new secret for ``owner``: by Thinkwise's rule only where the tenant allows it."""
    if user_holds_administrator_role(owner) and not (actor is not None and user_is_main_administrator(actor)):
        raise NotPermitted(
            f"Only a main administrator may {verb} tokens for an administrator.", code="owner_is_administrator"
        )
    if not Tenant.objects.filter(pk=owner.tenant_id, admins_may_issue_pats_via_api=True).exists():
        raise NotPermitted(
            f"Administrators may not {verb} personal access tokens through the API in this tenant "
            "(tenant policy “administrators may issue PATs through the API” is off).",
            code="api_issuance_disabled",
        )


def _require_owner(token: PersonalAccessToken, actor: User) -> None:
    if token.owner_id != actor.pk:
        raise NotPermitted("Only the owner of a token can change or delete it.", code="not_token_owner")


def _require_not_ended(token: PersonalAccessToken, verb: str) -> None:
    if token.status == TokenStatus.DELETED:
        raise IllegalTransition("This token has been deleted.", code="token_deleted")
    if token.status == TokenStatus.REVOKED:
        raise IllegalTransition(
            f"This token was revoked ({token.get_revocation_cause_display().lower()}) and cannot be {verb}. "
            "It can only be deleted.",
            code="token_revoked",
        )
    if token.approval == Approval.DENIED:
        raise IllegalTransition(
            f"A user administrator denied this token ({token.approval_note}); it cannot be {verb}. "
            "It can only be deleted.",
            code="token_denied",
        )


def token_changeable(token: PersonalAccessToken) -> bool:
    """Whether its owner may still edit, regenerate or rename ``token`` (what
    those services require): the pages offer them only then."""
    try:
        _require_changeable(token, "changed")
    except IllegalTransition:
        return False
    return True


def _require_changeable(token: PersonalAccessToken, verb: str) -> None:
    _require_not_ended(token, verb)
    _require_personal(token, verb)


def _require_personal(token: PersonalAccessToken, verb: str) -> None:
    # An embedding token's lifetime and permissions are the integration's
    # (``patExpiry``): its owner may not stretch a token that travelled in a URL.
    if token.kind == TokenKind.EMBED:
        raise IllegalTransition(
            f"Embedding tokens are issued by an integration and cannot be {verb}. They can only be deleted.",
            code="embedding_token",
        )


def _name_change(
    token: PersonalAccessToken, name: object, errors: dict, changes: dict, named_for: User | None = None
) -> bool:
    """Rename ``token`` in memory if ``name`` is valid, new and not taken by the
    owner; return whether it was taken (``named_for``: see ``_name_taken_message``)."""
    cleaned = _clean_name(name, errors)
    if "name" in errors or cleaned == token.name:
        return False
    taken = token_name_taken(token.owner, cleaned, exclude_id=token.pk)
    if taken:
        errors["name"] = [token_name_taken_message(cleaned, named_for)]
    changes["name"] = [token.name, cleaned]
    token.name = cleaned
    return taken


def _purpose_change(token: PersonalAccessToken, purpose: object, errors: dict, changes: dict) -> None:
    if purpose is None:
        return
    cleaned = _clean_purpose(purpose, errors)
    if "purpose" not in errors and cleaned != token.purpose:
        changes["purpose"] = [token.purpose, cleaned]
        token.purpose = cleaned


def _save(token: PersonalAccessToken, fields: list[str], named_for: User | None = None) -> None:
    try:
        with transaction.atomic():
            token.save(update_fields=fields)
    except IntegrityError:
        # A concurrent request took the same name between our check and the write.
        raise _invalid({"name": [token_name_taken_message(token.name, named_for)]}, name_taken=True) from None


@transaction.atomic
def token_edit(
    *,
    token: PersonalAccessToken,
    actor: User,
    name: str | None = None,
    purpose: str | None = None,
    expires_at: datetime | None = None,
    role_codes: Sequence[str] | None = None,
    allowed_networks: list[str] | None = None,
    ip: str | None = None,
    now: datetime | None = None,
) -> PersonalAccessToken:
    """Change a token's name, purpose, expiry, roles and/or allowed networks (None leaves a field as it is).

    A new expiry reactivates an expired token; a valid set of roles
    reactivates an inactive one. Only the owner may edit; revoked and deleted
    tokens are final (IllegalTransition).
    """
    now = now or timezone.now()
    token = _lock(token)
    _require_owner(token, actor)
    _require_changeable(token, "edited")
    before = token_state(token, now)

    errors: dict[str, list[str]] = {}
    changes: dict[str, list] = {}
    new_roles: list[Role] | None = None
    name_taken = name is not None and _name_change(token, name, errors, changes)
    _purpose_change(token, purpose, errors, changes)
    if allowed_networks is not None:
        networks = _clean_networks(allowed_networks, token.tenant, errors)
        if "allowed_networks" not in errors and networks != token.allowed_networks:
            changes["allowed_networks"] = [token.allowed_networks, networks]
            token.allowed_networks = networks
    if expires_at is not None and expires_at != token.expires_at:
        _check_expiry(expires_at, token.tenant, now, errors)
        if "expires_at" not in errors:
            changes["expires_at"] = [token.expires_at.isoformat(), expires_at.isoformat()]
            token.expires_at = expires_at
    if role_codes is not None:
        new_roles = _resolve_roles(token.owner, token.application, role_codes, errors)
        old_codes = sorted(token.roles.values_list("code", flat=True))
        new_codes = sorted(role.code for role in new_roles)
        if old_codes != new_codes:
            changes["roles"] = [old_codes, new_codes]
            _approval_change(token, [role for role in new_roles if role.code not in old_codes], new_roles, now, changes)
        else:
            new_roles = None
    if errors:
        raise _invalid(errors, name_taken)
    if not changes:
        return token

    _save(token, ["name", "purpose", "expires_at", "allowed_networks", *APPROVAL_FIELDS])
    if new_roles is not None:
        token.roles.set(new_roles)
    after = token_state(token, now)
    if before.status != after.status:
        changes["state"] = [before.status, after.status]
    inactive_mark_set([token.pk], marked=bool(after.inactive_reasons))
    audit_record(
        action=AuditAction.TOKEN_EDITED,
        tenant_id=token.tenant_id,
        actor=actor,
        token_id=token.pk,
        ip=ip,
        changes=changes,
    )
    if changes.get("approval", [None, None])[1] == Approval.PENDING:
        _approval_request_record(token, actor, None, ip)
    return token


APPROVAL_FIELDS = (
    "approval",
    "approval_requested_at",
    "approval_decided_at",
    "approval_decided_by",
    "approval_decided_by_label",
    "approval_note",
)


def _approval_change(
    token: PersonalAccessToken, added: list[Role], roles: list[Role], now: datetime, changes: dict
) -> None:
    """An edit that adds a role needing approval makes the whole token wait
    again (one state per token: what the owner sees is what authenticates);
    a pending token whose edit leaves out every such role needs none."""
    before = token.approval
    if _needs_approval(added):
        token.approval, token.approval_requested_at = Approval.PENDING, now
        token.approval_decided_at, token.approval_decided_by = None, None
        token.approval_decided_by_label, token.approval_note = "", ""
    elif before == Approval.PENDING and not _needs_approval(roles):
        token.approval, token.approval_requested_at = Approval.NOT_NEEDED, None
    if token.approval != before:
        changes["approval"] = [before, token.approval]


@transaction.atomic
def token_approval_decide(
    *,
    token: PersonalAccessToken,
    actor: User,
    approve: bool,
    note: str = "",
    ip: str | None = None,
    now: datetime | None = None,
) -> PersonalAccessToken:
    """Approve a pending token (it works from this moment) or deny it (for
    good; ``note`` is then the reason, required, as its owner is told).

    Decided by a user administrator of the token's tenant (or a main
    administrator), never by its owner nor by the administrator who issued
    it for the owner: approval is a second person's decision.
    """
    now = now or timezone.now()
    token = _lock(token)
    if not user_administers_tenant_users(actor, token.tenant_id):
        raise NotPermitted(
            "Only a user administrator of the token's tenant can approve or deny it.", code="not_tenant_admin"
        )
    if actor.pk == token.owner_id:
        raise NotPermitted(
            "This is your own token: another administrator of your tenant decides on it.", code="own_token"
        )
    if AuditEvent.objects.filter(token_id=token.pk, action=AuditAction.TOKEN_CREATED, actor=actor).exists():
        raise NotPermitted(
            "You issued this token for its owner: another administrator decides on it.", code="issued_by_you"
        )
    status = token_state(token, now).status
    if status != EffectiveStatus.PENDING:
        raise IllegalTransition(f"This token is not awaiting approval: it is {status}.", code="not_pending")
    note = whitespace_collapsed(note)[:500]
    if not approve and not note:
        raise ValidationFailed({"reason": ["Say why the request is denied: its owner is told."]})
    token.approval = Approval.APPROVED if approve else Approval.DENIED
    token.approval_decided_at, token.approval_decided_by = now, actor
    token.approval_decided_by_label = (actor.get_full_name() or actor.username)[:200]  # as the owner reads it
    token.approval_note = note
    token.save(update_fields=list(APPROVAL_FIELDS))
    audit_record(
        action=AuditAction.TOKEN_APPROVED if approve else AuditAction.TOKEN_DENIED,
        tenant_id=token.tenant_id,
        actor=actor,
        token_id=token.pk,
        ip=ip,
        reason=note,
        changes={"approval": [Approval.PENDING.value, token.approval]},
    )
    enqueue_token_notification(token.pk, token.approval)
    return token


@transaction.atomic
def token_rotate(
    *,
    token: PersonalAccessToken,
    actor: User | None,
    expires_at: datetime | None = None,
    grace: timedelta = timedelta(0),
    by_itself: bool = False,
    actor_label: str | None = None,
    ip: str | None = None,
    now: datetime | None = None,
) -> IssuedToken:
    """Regenerate a token's secret (GitLab's rotate, GitHub's regenerate).

    The token keeps its name, purpose, application, permissions and policy;
    its new expiry is checked as at creation (None: as far ahead as the
    current secret's lifetime, within the tenant's maximum). The old secret keeps working
    for ``grace`` (at most a day, and never past its own expiry), then is
    kept only to recognise its reuse (``token_reuse_end``). The audit event
    names both secrets by their display prefixes.

    Asked by the owner (``actor``), by the token itself (``by_itself``: the
    bearer of its current secret), or through the management API by an
    administrator of the tenant or an integration (``actor`` None), where the
    tenant lets administrators issue tokens: the caller receives the secret.
    """
    now = now or timezone.now()
    token = _lock(token)
    if not by_itself and (actor is None or actor.pk != token.owner_id):
        if actor is not None and not user_administers_tenant_users(actor, token.tenant_id):
            raise NotPermitted("Only the owner or an administrator of the tenant can regenerate this token.")
        if token.application_id is None:  # as at creation: its secret is its owner's alone
            raise NotPermitted(
                "Administrative tokens are regenerated by their owners only.", code="administrative_token"
            )
        _require_may_issue_for(token.owner, actor, "regenerate")
    _require_changeable(token, "regenerated")
    _require_may_hold_tokens(token.owner)
    if expires_at is None:
        expires_at = now + _secret_lifetime(token)
    errors: dict[str, list[str]] = {}
    _check_expiry(expires_at, token.tenant, now, errors)
    if not isinstance(grace, timedelta) or not timedelta(0) <= grace <= MAX_GRACE:
        errors["grace"] = ["The old secret can keep working for at most 24 hours."]
    if errors:
        raise ValidationFailed(errors)

    plaintext = keys.generate()
    old_prefix, old_expiry = token.display_prefix, token.expires_at
    works_until = max(now, min(now + grace, old_expiry))  # an expired secret is not revived
    RotatedSecret.objects.create(
        token=token,
        digest=token.digest,
        pepper_id=token.pepper_id,
        display_prefix=old_prefix,
        successor_prefix=keys.display_prefix(plaintext),
        rotated_at=now,
        works_until=works_until,
    )
    token.digest, token.pepper_id = keys.digest(plaintext), keys.current_pepper_id()
    token.display_prefix, token.expires_at = keys.display_prefix(plaintext), expires_at
    token.save(update_fields=["digest", "pepper_id", "display_prefix", "expires_at"])
    inactive_mark_set([token.pk], marked=bool(token_state(token, now).inactive_reasons))
    audit_record(
        action=AuditAction.TOKEN_ROTATED,
        tenant_id=token.tenant_id,
        actor=token.owner if by_itself else actor,
        label=actor_label or ("the token itself" if by_itself else None),
        token_id=token.pk,
        ip=ip,
        changes={
            "secret": [old_prefix, token.display_prefix],
            "expires_at": [old_expiry.isoformat(), expires_at.isoformat()],
            "old_secret_works_until": works_until.isoformat(),
        },
    )
    enqueue_issued_notice(
        token.pk,
        "regenerated",
        issuer=_issuer_text(token.owner, actor, actor_label, by_itself=by_itself),
        ip=ip,
        prefix=token.display_prefix,
    )
    return IssuedToken(token=token, plaintext=plaintext)


def _secret_lifetime(token: PersonalAccessToken) -> timedelta:
    """How long the token's current secret was issued for: from its creation or last regeneration to its expiry."""
    last = token.rotated_secrets.order_by("-rotated_at").values_list("rotated_at", flat=True).first()
    lifetime = token.expires_at - (last or token.created_at)
    return min(max(lifetime, MIN_LIFETIME), timedelta(days=token.tenant.max_token_lifetime_days))


@transaction.atomic
def token_reuse_end(*, secret_id: int, ip: str | None, now: datetime | None = None) -> bool:
    """A replaced secret was presented after its grace period: someone other
    than the integration that switched over holds it. End the token, its
    current secret too, say why, and tell the owner. Idempotent: returns
    whether this call ended it."""
    now = now or timezone.now()
    secret = RotatedSecret.objects.select_for_update().filter(pk=secret_id).first()
    if secret is None or secret.reuse_detected_at is not None or secret.works_until > now:
        return False
    secret.reuse_detected_at = now
    secret.save(update_fields=["reuse_detected_at"])
    token = secret.token
    if token.status != TokenStatus.ACTIVE:
        return False
    token_revoke(
        token=token,
        actor=None,
        cause=RevocationCause.REUSE_DETECTED,
        actor_label="reuse detection",
        ip=ip,
        reason=(
            f"The secret {secret.display_prefix}…, replaced by {secret.successor_prefix}… on "
            f"{secret.rotated_at:%Y-%m-%d %H:%M} UTC, was used from {ip or 'an unknown address'} after its grace "
            "period ended: someone else holds it."
        ),
        now=now,
    )
    return True


@transaction.atomic
def token_delete(
    *, token: PersonalAccessToken, actor: User, ip: str | None = None, now: datetime | None = None
) -> PersonalAccessToken:
    """Delete a token at its owner's request (final; the row stays for the audit trail).

    Active and revoked tokens can be deleted; a deleted one cannot be deleted again.
    """
    token = _lock(token)
    _require_owner(token, actor)
    if token.status == TokenStatus.DELETED:
        raise IllegalTransition("This token has already been deleted.", code="token_deleted")
    token.status = TokenStatus.DELETED
    token.deleted_at = now or timezone.now()
    token.save(update_fields=["status", "deleted_at"])
    audit_record(action=AuditAction.TOKEN_DELETED, tenant_id=token.tenant_id, actor=actor, token_id=token.pk, ip=ip)
    return token


@transaction.atomic
def token_delete_revoked(
    *, owner: User, actor: User, ip: str | None = None, now: datetime | None = None
) -> list[PersonalAccessToken]:
    """Delete every revoked token of ``owner`` at the owner's request, one by one
    through ``token_delete`` (so each is audited); return those deleted.
    Raises NotPermitted as ``token_delete`` does when ``actor`` is not the owner."""
    now = now or timezone.now()
    return [token_delete(token=token, actor=actor, ip=ip, now=now) for token in revoked_tokens_of(owner)]


# Causes whose owner is told by e-mail. A replaced embedding token is not: a
# portal may issue one on every page load, and the owner did not make it.
NOTIFIED_CAUSES = {
    RevocationCause.ADMINISTRATOR: "revoked",
    RevocationCause.INTEGRATION: "revoked",
    RevocationCause.OPERATOR: "revoked",
    RevocationCause.LEAK_REPORT: "reported_leaked",
    RevocationCause.REUSE_DETECTED: "reuse_detected",
}
AUDITED_AS = {
    RevocationCause.LEAK_REPORT: AuditAction.TOKEN_REPORTED_LEAKED,
    RevocationCause.REUSE_DETECTED: AuditAction.TOKEN_REUSE_DETECTED,
}


@transaction.atomic
def token_revoke(
    *,
    token: PersonalAccessToken,
    actor: User | None,
    cause: RevocationCause | None = None,
    actor_label: str | None = None,
    ip: str | None = None,
    reason: str = "",
    now: datetime | None = None,
    notify: bool = True,
) -> PersonalAccessToken:
    """Revoke a token: irreversible, and safe to repeat. The cause, who and
    why are kept on the token for its owner and the console, and audited.

    A user ``actor`` must be a main administrator or a user administrator of
    the token's tenant (NotPermitted otherwise); the cause is then
    ``ADMINISTRATOR``. ``actor`` None is for callers that authorised the
    request themselves and name the cause: an integration credential of the
    tenant, a leak report by someone holding the token, a newer embedding
    token, an operator's command (the default). Revoking a revoked token
    changes and records nothing; a deleted token cannot be revoked.
    """
    token = _lock(token)
    if actor is not None and not user_administers_tenant_users(actor, token.tenant_id):
        raise NotPermitted("Only an administrator of the token's tenant can revoke it.", code="not_tenant_admin")
    if token.status == TokenStatus.REVOKED:
        return token
    if token.status == TokenStatus.DELETED:
        raise IllegalTransition("This token has been deleted by its owner.", code="token_deleted")
    if actor is not None:
        cause = RevocationCause.ADMINISTRATOR
    cause = RevocationCause(cause or RevocationCause.OPERATOR)
    label = actor_label or actor_label_of(actor)
    reason = whitespace_collapsed(reason)[:500]
    token.status = TokenStatus.REVOKED
    token.revoked_at = now or timezone.now()
    token.revoked_by = actor
    token.revocation_cause, token.revoked_by_label, token.revocation_reason = cause, label[:200], reason
    token.save(
        update_fields=[
            "status",
            "revoked_at",
            "revoked_by",
            "revocation_cause",
            "revoked_by_label",
            "revocation_reason",
        ]
    )
    audit_record(
        action=AUDITED_AS.get(cause, AuditAction.TOKEN_REVOKED),
        tenant_id=token.tenant_id,
        actor=actor,
        label=label,
        token_id=token.pk,
        ip=ip,
        reason=reason,
        changes={"cause": cause.value},
    )
    if cause in NOTIFIED_CAUSES and notify:
        enqueue_token_notification(token.pk, NOTIFIED_CAUSES[cause])
    return token


def tokens_revoke_by_administrator(
    *, tokens: list[PersonalAccessToken], actor: User, ip: str | None = None, reason: str = ""
) -> tuple[list[PersonalAccessToken], list[tuple[PersonalAccessToken, DomainError]]]:
    """Revoke many tokens in one administrator's action (each as ``token_revoke``, in its own
    transaction); each owner gets one e-mail listing theirs. Returns the revoked and the refused."""
    revoked, refused = [], []
    for token in tokens:
        try:
            revoked.append(token_revoke(token=token, actor=actor, ip=ip, reason=reason, notify=False))
        except DomainError as error:
            refused.append((token, error))
    by_owner: dict[int, list[int]] = {}
    for token in revoked:
        by_owner.setdefault(token.owner_id, []).append(token.pk)
    for owner_id, token_ids in by_owner.items():
        enqueue_revoked_notice(owner_id, token_ids)
    return revoked, refused


@transaction.atomic
def token_rename(
    *,
    token: PersonalAccessToken,
    actor: User | None,
    name: str | None = None,
    purpose: str | None = None,
    actor_label: str | None = None,
    ip: str | None = None,
) -> PersonalAccessToken:
    """Rename a token or change its purpose (None: as it is) for the management
    API: by its owner, an administrator of its tenant, or (``actor`` None) a
    caller that authorised itself. Neither widens the token."""
    token = _lock(token)
    if actor is not None and actor.pk != token.owner_id and not user_administers_tenant_users(actor, token.tenant_id):
        raise NotPermitted("Only the owner or an administrator of the tenant can rename this token.")
    _require_changeable(token, "renamed")
    errors: dict[str, list[str]] = {}
    changes: dict[str, list] = {}
    named_for = token.owner if actor is None or actor.pk != token.owner_id else None
    name_taken = name is not None and _name_change(token, name, errors, changes, named_for)
    _purpose_change(token, purpose, errors, changes)
    if errors:
        raise _invalid(errors, name_taken)
    if not changes:
        return token
    _save(token, ["name", "purpose"], named_for)
    audit_record(
        action=AuditAction.TOKEN_EDITED,
        tenant_id=token.tenant_id,
        actor=actor,
        label=actor_label,
        token_id=token.pk,
        ip=ip,
        changes=changes,
    )
    return token


def token_report_leaked(plaintext: str, *, ip: str | None = None) -> bool:
    """Revoke the token whose full text someone reported leaked, and tell its owner.

    Returns whether a token was revoked; callers must not tell the reporter.
    """
    token = keys.find_by_secret(PersonalAccessToken.objects.all(), plaintext)
    if token is None or token.status != TokenStatus.ACTIVE:
        return False
    token_revoke(
        token=token,
        actor=None,
        cause=RevocationCause.LEAK_REPORT,
        actor_label=f"leak report from {ip or 'an unknown address'}",
        ip=ip,
        reason="Reported leaked by someone holding the token.",
    )
    return True


def inactive_mark_set(token_ids: list[int], *, marked: bool) -> None:
    """Keep ``marked_inactive`` (the console's index of inactive tokens) in
    step with a change, in its transaction. ``update`` sends no signal: the
    change itself has already told the caches."""
    if token_ids:
        PersonalAccessToken.objects.filter(pk__in=token_ids).exclude(marked_inactive=marked).update(
            marked_inactive=marked
        )
