"""OAuth 2.0 for applications: clients, the token exchange grant (RFC 8693)
that turns a PAT into a short-lived signed access token (Logto, seed 004),
introspection (RFC 7662) and revocation (RFC 7009).

Access tokens are RS256 JWTs. Unlike Logto, they stop working on this
service's API and in introspection as soon as the PAT behind them is
revoked, deleted, expired or inactive: every check re-evaluates the PAT.
"""

import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from core.errors import NotPermitted, ValidationFailed
from core.text import whitespace_collapsed
from iam.audit import audit_record
from iam.models import AuditAction, User
from iam.selectors import user_administers_applications
from tenants.models import Application
from tokens import keys
from tokens.models import OAuthClient, RevokedAccessToken
from tokens.signing import (
    access_token_claims,
    access_token_sign,
    api_audience,
    application_audience,
    issuer,
    looks_like_jwt,
)
from tokens.verification import AccessTokenContext, SessionContext, credential_use, credential_verify

GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
PAT_TOKEN_TYPE = "urn:iam:params:oauth:token-type:personal_access_token"
LOGTO_PAT_TOKEN_TYPE = "urn:logto:token-type:personal_access_token"
PAT_TOKEN_TYPES = (PAT_TOKEN_TYPE, LOGTO_PAT_TOKEN_TYPE)
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
CLIENT_ID_SHAPE = re.compile(r"oc_[0-9a-f]{32}")


class OAuthError(Exception):
    """An RFC 6749 §5.2 error response."""

    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


# ---------------------------------------------------------------- clients


@dataclass(frozen=True)
class IssuedClient:
    client: OAuthClient
    secret: str


@transaction.atomic
def oauth_client_create(
    *,
    application: Application,
    name: str,
    actor: User | None,
    token_exchange: bool = False,
    allowed_scopes: list[str] | None = None,
    access_token_lifetime: int = 3600,
) -> IssuedClient:
    """Register a client of ``application``; its secret exists only in the result."""
    if actor is not None and not user_administers_applications(actor):
        raise NotPermitted("Only a main or application administrator can register OAuth clients.")
    name = whitespace_collapsed(name)
    if not name or len(name) > 100:
        raise ValidationFailed({"name": ["Enter a name of at most 100 characters."]})
    Application.objects.select_for_update().filter(pk=application.pk).first()  # one client of a name at a time
    if oauth_client_name_taken(application, name):
        raise ValidationFailed({"name": [f"The application already has an OAuth client named “{name}”."]})
    if not 60 <= access_token_lifetime <= 86400:
        raise ValidationFailed({"access_token_lifetime": ["Between 60 and 86400 seconds."]})
    secret = keys.generate(keys.CLIENT_SECRET_PREFIX)
    client = OAuthClient.objects.create(
        application=application,
        name=name,
        client_id=f"oc_{uuid.uuid4().hex}",
        secret_digest=keys.digest(secret),
        pepper_id=keys.current_pepper_id(),
        token_exchange_enabled=token_exchange,
        allowed_scopes=list(allowed_scopes or []),
        access_token_lifetime=access_token_lifetime,
    )
    audit_record(
        action=AuditAction.OAUTH_CLIENT_CREATED,
        tenant_id=None,
        actor=actor,
        changes={"application": application.slug, "client_id": client.client_id, "token_exchange": token_exchange},
    )
    return IssuedClient(client, secret)


def oauth_client_name_taken(application: Application, name: str) -> bool:
    """Whether a live client of ``application`` already has this name (names tell clients apart)."""
    return OAuthClient.objects.filter(application=application, name=name, revoked_at__isnull=True).exists()


@transaction.atomic
def oauth_client_revoke(*, client: OAuthClient, actor: User | None, ip: str | None = None) -> OAuthClient:
    """Revoke a client (irreversible, safe to repeat): it can no longer
    authenticate, and every access token exchanged through it stops working at
    once, on this service's API and in introspection."""
    if actor is not None and not user_administers_applications(actor):
        raise NotPermitted("Only a main or application administrator can revoke OAuth clients.")
    client = OAuthClient.objects.select_for_update().select_related("application").get(pk=client.pk)
    if client.revoked_at is not None:
        return client
    client.revoked_at = timezone.now()
    client.save(update_fields=["revoked_at"])
    audit_record(
        action=AuditAction.OAUTH_CLIENT_REVOKED,
        tenant_id=None,
        actor=actor,
        ip=ip,
        changes={"application": client.application.slug, "client_id": client.client_id, "name": client.name},
    )
    return client


def oauth_client_authenticate(client_id: str, secret: str) -> OAuthClient | None:
    """Return the live client if ``secret`` is its secret (constant-time), else None.

    A client id not of our shape (``oc_`` and 32 hex digits: no NUL, no control
    character, nothing a database refuses) is refused without a query."""
    if not CLIENT_ID_SHAPE.fullmatch(client_id):
        return None
    client = OAuthClient.objects.select_related("application").filter(client_id=client_id).first()
    if client is None or client.revoked_at is not None or not keys.is_well_formed(secret, keys.CLIENT_SECRET_PREFIX):
        return None
    try:
        expected = keys.digest(secret, client.pepper_id)
    except KeyError:  # the client's pepper was retired
        return None
    if not hmac.compare_digest(client.secret_digest, expected):
        return None
    keys.rehash_on_use(client, secret, field="secret_digest")
    return client


# ---------------------------------------------------------------- token exchange


def token_exchange(
    *,
    client: OAuthClient,
    subject_token: str,
    subject_token_type: str,
    scope: str | None = None,
    audiences: list[str] | None = None,
    ip: str | None = None,
    now: datetime | None = None,
) -> dict:
    """Exchange a PAT for a signed access token (RFC 8693 §2.2 response).

    The scope granted never exceeds the PAT's effective permissions (nor the
    client's allowed scopes), and the PAT must belong to the client's
    application. Raises OAuthError.
    """
    now = now or timezone.now()
    if not client.token_exchange_enabled:
        raise OAuthError("unauthorized_client", "Token exchange is not enabled for this client.")
    if subject_token_type not in PAT_TOKEN_TYPES:
        raise OAuthError("invalid_request", f"subject_token_type must be one of {', '.join(PAT_TOKEN_TYPES)}.")
    # The caller is the client's backend, not the token's user: the token's
    # network allowlist binds where the user presents it, and is copied into
    # the access token ("allowed_networks") for the resource server to apply.
    context = credential_use(subject_token, ip=ip, now=now, network_bound=False)
    if context is None:
        raise OAuthError("invalid_grant", "The subject token is invalid, expired, revoked or inactive.")
    token = context.token
    if token.application_id != client.application_id:
        raise OAuthError("invalid_grant", "The subject token does not belong to this client's application.")
    available = set(context.permissions)
    if client.allowed_scopes:
        available &= set(client.allowed_scopes)
    requested = scope.split() if scope else None
    if requested is not None and not set(requested) <= available:
        missing = sorted(set(requested) - available)
        raise OAuthError("invalid_scope", f"Not granted to this token or client: {' '.join(missing)}.")
    granted = sorted(set(requested) if requested is not None else available)
    if not granted:
        raise OAuthError("invalid_scope", "No permission of the token can be granted to this client.")
    allowed_audiences = [api_audience(), application_audience(client.application)]
    audiences = audiences or allowed_audiences
    if not set(audiences) <= set(allowed_audiences):
        raise OAuthError("invalid_target", f"The audience must be among: {' '.join(allowed_audiences)}.")

    lifetime = min(client.access_token_lifetime, int((token.expires_at - now).total_seconds()))
    claims = {
        "iss": issuer(),
        "sub": str(token.owner_id),
        "aud": audiences,
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + lifetime,
        "jti": uuid.uuid4().hex,
        "scope": " ".join(granted),
        "client_id": client.client_id,
        "tenant": token.tenant.slug,
        "application": str(token.application_id),
        "pat_id": token.pk,
        **_networks_claim(token),
    }
    access_token = access_token_sign(claims)
    audit_record(
        action=AuditAction.TOKEN_EXCHANGED,
        tenant_id=token.tenant_id,
        actor=None,
        token_id=token.pk,
        ip=ip,
        label=f"OAuth client {client.client_id}",
        changes={"scope": claims["scope"], "jti": claims["jti"]},
    )
    return {
        "access_token": access_token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": claims["scope"],
    }


# ---------------------------------------------------------------- introspection and revocation

INACTIVE = {"active": False}


def introspect(*, client: OAuthClient, value: str, ip: str | None, now: datetime | None = None) -> dict:
    """RFC 7662: describe a PAT, an access token or an embed session of the
    client's application; anything else (or another application's) is inactive."""
    context = credential_verify(value, ip=ip, now=now, network_bound=False)  # the caller is a resource server
    if context is None or context.token.application_id != client.application_id:
        return dict(INACTIVE)
    kind, exp, iat, issued_to = "personal_access_token", context.token.expires_at, context.token.created_at, {}
    if isinstance(context, SessionContext):
        kind, exp, iat = "embed_session", context.session.expires_at, context.session.created_at
    elif isinstance(context, AccessTokenContext):
        kind = "access_token"
        exp = datetime.fromtimestamp(context.claims["exp"], tz=UTC)
        iat = datetime.fromtimestamp(context.claims["iat"], tz=UTC)
        # The client it was issued to, which may be another client of the same application.
        issued_to = {"client_id": context.claims["client_id"], "aud": context.claims["aud"]}
    token = context.token
    # A PAT or an embed session was issued to its owner, by no OAuth client: no client_id rather
    # than the introspecting client's, which would name a client that never obtained it.
    return {
        "active": True,
        "scope": " ".join(sorted(context.permissions)),
        **issued_to,
        "username": token.owner.username,
        "sub": str(token.owner_id),
        "exp": int(exp.timestamp()),
        "iat": int(iat.timestamp()),
        "token_type": "Bearer",  # RFC 7662 §2.2: an OAuth token type (RFC 6749 §7.1); every kind is a bearer token
        "token_kind": kind,  # which of this service's credentials it is (an extension member)
        "iss": issuer(),
        "tenant": token.tenant.slug,
        "application": str(token.application_id),
        **_networks_claim(token),
    }


def _networks_claim(token) -> dict:
    """The networks the token's user must call from (the token's and its tenant's, both apply)."""
    if not token.allowed_networks and not token.tenant.allowed_networks:
        return {}
    return {"allowed_networks": {"token": token.allowed_networks, "tenant": token.tenant.allowed_networks}}


def revoke(*, client: OAuthClient, value: str) -> None:
    """RFC 7009: revoke an access token this client obtained. A personal access
    token or an embed session is refused as ``unsupported_token_type`` (§2.2.1):
    its owner or an administrator ends it, never an OAuth client, and a success
    would report a revocation that did not happen. Decided by the value's form
    alone, so the answer says nothing of whether such a token exists. Anything
    else is ignored, as §2.2 asks (the response is the same)."""
    if value.startswith((keys.PREFIX, keys.EMBED_SESSION_PREFIX)):
        raise OAuthError(
            "unsupported_token_type",
            "Personal access tokens and embed sessions are not revoked by OAuth clients: "
            "their owner or an administrator revokes them.",
        )
    claims = access_token_claims(value) if looks_like_jwt(value) else None
    if claims is None or claims.get("client_id") != client.client_id:
        return
    expires_at = datetime.fromtimestamp(claims["exp"], tz=UTC)
    RevokedAccessToken.objects.get_or_create(jti=claims["jti"], defaults={"expires_at": expires_at})


def prune_revoked_access_tokens(now: datetime | None = None) -> int:
    """Forget revocations of access tokens that have expired anyway."""
    deleted, _ = RevokedAccessToken.objects.filter(
        expires_at__lte=(now or timezone.now()) - timedelta(minutes=5)
    ).delete()
    return deleted
