"""Integrations: tenant credentials, embedding tokens and embed sessions
(ToolJet's embedding, seeds 000 and 002), and issuing tokens for users
through the management API (seed 004) under the tenant's policy."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from core.errors import NotPermitted, ValidationFailed
from iam.audit import audit_record
from iam.models import AuditAction, Role, User
from iam.selectors import user_administers_tenant_users, user_holds_administrator_role, user_is_main_administrator
from tenants.models import Application, Tenant
from tokens import keys
from tokens.models import (
    EmbedSession,
    IntegrationCredential,
    PersonalAccessToken,
    RevocationCause,
    TokenKind,
    TokenStatus,
)
from tokens.services import (
    IssuedToken,
    _insert_token,
    application_allows_pats,
    embed_token_name,
    token_create,
    token_revoke,
)
from tokens.verification import TokenContext, credential_use

# Documented maxima of the embedding API.
MAX_SESSION_MINUTES = 24 * 60
MAX_PAT_SECONDS = 365 * 24 * 3600
LAST_USED_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedCredential:
    credential: IntegrationCredential
    plaintext: str


def credential_label(credential: IntegrationCredential) -> str:
    return f"integration credential “{credential.name}” ({credential.display_prefix}…)"


@transaction.atomic
def integration_credential_create(
    *, tenant: Tenant, name: str, actor: User | None, scopes: list[str] | None = None, ip: str | None = None
) -> IssuedCredential:
    """Create a tenant's integration credential; its plaintext exists only in the result.

    Only a main administrator or a user administrator of the tenant may
    (``actor`` None: an operator command).
    """
    if actor is not None and not user_administers_tenant_users(actor, tenant.pk):
        raise NotPermitted("Only an administrator of the tenant can create its integration credentials.")
    scopes = list(dict.fromkeys(scopes or [IntegrationCredential.Scope.EMBED]))
    errors: dict[str, list[str]] = {}
    name = " ".join(str(name or "").split())
    if not name or len(name) > 100:
        errors["name"] = ["Enter a name of at most 100 characters."]
    elif IntegrationCredential.objects.filter(tenant=tenant, name=name, revoked_at__isnull=True).exists():
        errors["name"] = [f"The tenant already has a credential named “{name}”."]
    unknown = sorted(set(scopes) - set(IntegrationCredential.Scope.values))
    if unknown:
        errors["scopes"] = [f"Unknown scope {', '.join(unknown)}."]
    if errors:
        raise ValidationFailed(errors)
    plaintext = keys.generate(keys.CREDENTIAL_PREFIX)
    credential = IntegrationCredential.objects.create(
        tenant=tenant,
        name=name,
        scopes=scopes,
        display_prefix=keys.display_prefix(plaintext),
        digest=keys.digest(plaintext),
        pepper_id=keys.current_pepper_id(),
        created_by=actor,
    )
    audit_record(
        action=AuditAction.CREDENTIAL_CREATED,
        tenant_id=tenant.pk,
        actor=actor,
        ip=ip,
        changes={"credential": credential_label(credential), "scopes": scopes},
    )
    return IssuedCredential(credential, plaintext)


@transaction.atomic
def integration_credential_revoke(
    *, credential: IntegrationCredential, actor: User | None, ip: str | None = None
) -> IntegrationCredential:
    """Revoke a credential (irreversible, safe to repeat)."""
    if actor is not None and not user_administers_tenant_users(actor, credential.tenant_id):
        raise NotPermitted("Only an administrator of the tenant can revoke its integration credentials.")
    credential = IntegrationCredential.objects.select_for_update().get(pk=credential.pk)
    if credential.revoked_at is None:
        credential.revoked_at, credential.revoked_by = timezone.now(), actor
        credential.save(update_fields=["revoked_at", "revoked_by"])
        audit_record(
            action=AuditAction.CREDENTIAL_REVOKED,
            tenant_id=credential.tenant_id,
            actor=actor,
            ip=ip,
            changes={"credential": credential_label(credential)},
        )
    return credential


def integration_credential_authenticate(raw: str, now: datetime | None = None) -> IntegrationCredential | None:
    """Return the live credential whose plaintext is ``raw``, or None."""
    credential = keys.find_by_secret(
        IntegrationCredential.objects.select_related("tenant"), raw, keys.CREDENTIAL_PREFIX
    )
    if credential is None or credential.revoked_at is not None:
        return None
    if credential.pepper_id != keys.current_pepper_id():
        # Moved to the current pepper on use, as PATs are, so an old pepper can be retired.
        IntegrationCredential.objects.filter(pk=credential.pk, digest=credential.digest).update(
            digest=keys.digest(raw), pepper_id=keys.current_pepper_id()
        )
    now = now or timezone.now()
    if credential.last_used_at is None or credential.last_used_at < now - LAST_USED_INTERVAL:
        IntegrationCredential.objects.filter(pk=credential.pk).update(last_used_at=now)
    return credential


def _eligible_roles(user: User, application: Application) -> list[Role]:
    return list(Role.objects.filter(application=application, pat_eligible=True, grants__user=user).order_by("code"))


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
    roles = _eligible_roles(user, application)
    if not (user.is_active and user.can_create_pats and application_allows_pats(user.tenant, application) and roles):
        raise NotPermitted("The user does not have access to this application.", code="no_application_access")
    max_seconds = min(MAX_PAT_SECONDS, user.tenant.max_token_lifetime_days * 86400)
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
    issued = _insert_token(
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
        changes={
            "kind": "embed",
            "application": application.slug,
            "roles": [role.code for role in roles],
            "expires_at": issued.token.expires_at.isoformat(),
            "session_minutes": session_minutes,
        },
    )
    return issued


@dataclass(frozen=True)
class OpenedSession:
    session: EmbedSession
    secret: str
    context: TokenContext


@transaction.atomic
def embed_session_open(
    *, plaintext: str, application: Application, ip: str | None = None, now: datetime | None = None
) -> OpenedSession | None:
    """Open an embed session with an embedding token for ``application``, or
    return None if the token is not a usable embedding token of it. The
    session lasts the token's session minutes, never past the token's expiry."""
    now = now or timezone.now()
    context = credential_use(plaintext, ip=ip, now=now, kind=TokenKind.EMBED)
    if context is None or context.token.application_id != application.pk:
        return None
    token = context.token
    expires_at = min(now + timedelta(minutes=token.embed_session_minutes or 60), token.expires_at)
    secret = keys.generate(keys.EMBED_SESSION_PREFIX)
    session = EmbedSession.objects.create(
        token=token, digest=keys.digest(secret), pepper_id=keys.current_pepper_id(), expires_at=expires_at
    )
    audit_record(
        action=AuditAction.EMBED_SESSION_OPENED,
        tenant_id=token.tenant_id,
        actor=token.owner,
        token_id=token.pk,
        ip=ip,
        changes={"application": application.slug, "expires_at": expires_at.isoformat()},
    )
    return OpenedSession(session, secret, context)


def token_issue_for_user(
    *,
    owner: User,
    actor: User | None,
    actor_label: str | None,
    application: Application | None,
    name: str,
    expires_at: datetime,
    role_codes: list[str],
    ip: str | None = None,
) -> IssuedToken:
    """Create a token for ``owner`` on an administrator's or integration's
    request. Refused (403) unless the owner's tenant allows it: by Thinkwise's
    rule administrators do not create tokens for users."""
    if application is None:
        raise NotPermitted("Administrative tokens are created by their owners only.", code="administrative_token")
    if user_holds_administrator_role(owner) and not (actor is not None and user_is_main_administrator(actor)):
        raise NotPermitted(
            "Only a main administrator may issue tokens for an administrator.", code="owner_is_administrator"
        )
    if not Tenant.objects.filter(pk=owner.tenant_id, admins_may_issue_pats_via_api=True).exists():
        raise NotPermitted(
            "Administrators may not issue personal access tokens through the API in this tenant "
            "(tenant policy “administrators may issue PATs through the API” is off).",
            code="api_issuance_disabled",
        )
    return token_create(
        owner=owner,
        application=application,
        name=name,
        expires_at=expires_at,
        role_codes=role_codes,
        ip=ip,
        actor=actor,
        actor_label=actor_label,
    )
