"""Turning a credential into a context: the one verification path.

Every surface that accepts a credential goes through here: the API's bearer
tokens (``bearer``), the token exchange and introspection (``oauth``), and
embedding (``embedding``, ``embed_views``). A credential is

- a PAT or an embedding token (``pat_…``): found by its digest under any pepper
  (or a secret it had before it was regenerated, during its grace period);
- an exchanged access token (a JWT): its signature and claims checked, then
  the PAT behind it, unless the token or its OAuth client was revoked;
- an embed session (``es_…``): found by its digest, then its embedding token.

``credential_load`` finds it and the facts of the token behind it (one
loader: ``lookup.load_token_for_authentication``, one statement); ``context_build`` evaluates
the token's state now and narrows an access token's scope to what the PAT may
still do. Use is counted by ``credential_use`` (a PAT's or embedding token's
own secret, presented by its holder), or by the bearer's cache on its hot path.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from core.networks import address_within
from iam.models import SERVICE_PERMISSION_PREFIX
from tokens import keys, signing, usage
from tokens.lookup import load_secret_for_authentication, load_token_for_authentication
from tokens.models import (
    EmbedSession,
    OAuthClient,
    PersonalAccessToken,
    RevokedAccessToken,
    RotatedSecret,
    TokenKind,
    TokenStatus,
)
from tokens.refusals import refused_address_report
from tokens.reuse import reuse_report
from tokens.rules import TokenFacts, TokenState, evaluate


@dataclass(frozen=True)
class TokenContext:
    """What an authenticated request knows about its credential (``request.auth``)."""

    token: PersonalAccessToken
    permissions: frozenset[str]
    by_replaced_secret: bool = False  # presented a secret the token had before it was regenerated (grace period)

    @property
    def owner(self):
        return self.token.owner

    @property
    def effective_permissions(self) -> frozenset[str]:
        """The permissions that count: this service's own (``iam.*``) only on an
        administrative token, never on an application's token or a token
        exchanged from one, whatever codes an application's roles carry."""
        if self.token.application_id is None:
            return self.permissions
        return frozenset(code for code in self.permissions if not code.startswith(SERVICE_PERMISSION_PREFIX))


@dataclass(frozen=True)
class AccessTokenContext(TokenContext):
    claims: dict | None = None


@dataclass(frozen=True)
class SessionContext(TokenContext):
    session: EmbedSession | None = None


@dataclass(frozen=True)
class Loaded:
    """A credential found, with the token behind it and that token's facts."""

    token: PersonalAccessToken
    facts: TokenFacts
    claims: dict | None = None  # an access token's verified claims
    session: EmbedSession | None = None  # an embed session
    rotated: RotatedSecret | None = None  # the secret presented, if the token has since been regenerated

    @property
    def digest(self) -> str:
        return self.rotated.digest if self.rotated else self.token.digest


def credential_load(
    value: str, *, kind: str = TokenKind.PERSONAL, audience: str | list[str] | None = None, now: datetime | None = None
) -> Loaded | None:
    """Find the credential ``value`` and the token behind it, or None (malformed,
    unknown, or a token of another ``kind``: embedding tokens travel in URLs and
    open embed sessions only). An access token must be for ``audience``, if given."""
    if value.startswith(keys.EMBED_SESSION_PREFIX):
        return _session_load(value, now or timezone.now())
    if value.startswith(keys.PREFIX):
        return _secret_load(value, kind)
    if signing.looks_like_jwt(value):
        return _access_token_load(value, audience)
    return None


def context_build(
    loaded: Loaded,
    state: TokenState,
    now: datetime,
    *,
    ip: str | None,
    token: Callable[[], PersonalAccessToken] | None = None,
    network_bound: bool = True,
) -> TokenContext | None:
    """The context of a loaded credential whose token is in ``state`` now,
    presented from ``ip`` (the request's address, for rules bound to one), or
    None if it cannot be used: the token unusable, the access token expired,
    a PAT or embed session presented from outside the token's or its tenant's
    allowed networks (unless not ``network_bound``: the caller is not the
    token's user, but an OAuth client acting for them).
    ``token`` makes the token the context carries (the cache hands out copies);
    it is called only for a usable credential."""
    if loaded.rotated is not None and now >= loaded.rotated.works_until:
        if loaded.token.status == TokenStatus.ACTIVE:
            reuse_report(loaded.rotated.pk, ip)
        return None
    if not state.is_usable:
        return None
    if loaded.claims is not None and loaded.claims["exp"] <= now.timestamp():
        return None
    if network_bound and loaded.claims is None and not _address_allowed(loaded.token, ip):
        refused_address_report(loaded.token.pk, ip, now)
        return None
    carried = token() if token else loaded.token
    if loaded.claims is not None:
        scope = frozenset(loaded.claims.get("scope", "").split())
        return AccessTokenContext(token=carried, permissions=scope & state.permissions, claims=loaded.claims)
    if loaded.session is not None:
        return SessionContext(token=carried, permissions=state.permissions, session=loaded.session)
    return TokenContext(token=carried, permissions=state.permissions, by_replaced_secret=loaded.rotated is not None)


def _address_allowed(token: PersonalAccessToken, ip: str | None) -> bool:
    return address_within(ip, token.tenant.allowed_networks) and address_within(ip, token.allowed_networks)


def credential_verify(
    value: str,
    *,
    ip: str | None,
    kind: str = TokenKind.PERSONAL,
    audience: str | None = None,
    now: datetime | None = None,
    network_bound: bool = True,
) -> TokenContext | None:
    """The context of a usable credential presented from ``ip``, or None for
    anything else: callers must not tell malformed, unknown, expired, revoked,
    inactive and out-of-network apart."""
    now = now or timezone.now()
    loaded = credential_load(value, kind=kind, audience=audience, now=now)
    if loaded is None:
        return None
    return context_build(loaded, evaluate(loaded.facts, now), now, ip=ip, network_bound=network_bound)


def credential_use(
    value: str,
    *,
    ip: str | None,
    kind: str = TokenKind.PERSONAL,
    now: datetime | None = None,
    network_bound: bool = True,
) -> TokenContext | None:
    """``credential_verify`` a token's own secret presented by its holder, and
    count the use (last used, per-day counts, new addresses)."""
    now = now or timezone.now()
    context = credential_verify(value, ip=ip, kind=kind, now=now, network_bound=network_bound)
    if context is not None:
        usage.usage_record(context.token, ip=ip, now=now)
    return context


def _secret_load(plaintext: str, kind: str) -> Loaded | None:
    """The token of ``kind`` whose secret this is (no query for a malformed
    one). A token hashed under a retired pepper is moved to the current one."""
    loaded = keys.match_secret(plaintext, keys.PREFIX, _load_by_digests)
    if loaded is None or loaded.token.kind != kind:
        return None
    if loaded.rotated is None:  # a replaced secret's digest is not the token's to rewrite
        keys.rehash_on_use(loaded.token, plaintext)
    return loaded


def _load_by_digests(digests: list[str]) -> Loaded | None:
    token, facts, rotated = load_secret_for_authentication(digests)
    return None if token is None or facts is None else Loaded(token, facts, rotated=rotated)


def _access_token_load(value: str, audience: str | list[str] | None) -> Loaded | None:
    """A validly signed access token, not revoked, from a live client, and the
    personal token behind it."""
    claims = signing.access_token_claims(value, audience=audience)
    if claims is None or RevokedAccessToken.objects.filter(jti=claims["jti"]).exists():
        return None
    if not OAuthClient.objects.filter(client_id=str(claims.get("client_id")), revoked_at__isnull=True).exists():
        return None  # exchanged through a client revoked since
    token, facts = load_token_for_authentication(token_id=claims["pat_id"])
    if token is None or facts is None or token.kind != TokenKind.PERSONAL:
        return None
    return Loaded(token, facts, claims=claims)


def _session_load(secret: str, now: datetime) -> Loaded | None:
    """A live embed session and its embedding token: the session ends when it
    expires and as soon as its token cannot be used (evaluated every time)."""
    sessions = EmbedSession.objects.filter(expires_at__gt=now)
    session = keys.find_by_secret(sessions, secret, keys.EMBED_SESSION_PREFIX)
    if session is None:
        return None
    token, facts = load_token_for_authentication(token_id=session.token_id)
    if token is None or facts is None:
        return None
    return Loaded(token, facts, session=session)
