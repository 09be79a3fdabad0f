"""Authentication classes of the API."""

import base64
import binascii

from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from core.errors import InvalidToken
from core.http import client_ip
from iam.models import User
from tokens import keys
from tokens.bearer import bearer_authenticate
from tokens.credentials import integration_credential_authenticate
from tokens.models import IntegrationCredential
from tokens.verification import TokenContext


class BearerTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <pat>`` or ``Bearer <access token>`` from the token exchange.

    Parsing is strict: one scheme, one space, one token, nothing else. Every
    failure raises the same InvalidToken, so a client cannot tell an unknown
    token from a revoked, expired or inactive one. No session is created and
    CSRF does not apply: the credential is not ambient like a cookie.
    """

    def authenticate(self, request: Request) -> tuple[User, TokenContext] | None:
        header = request.META.get("HTTP_AUTHORIZATION")
        if header is None:
            return None
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer":
            return None  # another scheme: leave it to other authenticators
        context = bearer_authenticate(
            credential, ip=self.client_address(request), also_audience=self.also_audience(request)
        )
        return context.owner, context

    def client_address(self, request: Request) -> str | None:
        return client_ip(request)

    def also_audience(self, request: Request) -> str | None:
        """An access token's audience accepted besides this service's API (none here)."""
        return None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="iam"'


class CredentialContext:
    """``request.auth`` of a request made with an integration credential."""

    def __init__(self, credential: IntegrationCredential):
        self.credential = credential
        self.permissions = frozenset(credential.scopes)


class IntegrationUser:
    """``request.user`` for an integration credential: authenticated, no person behind it."""

    is_authenticated = True
    is_active = True
    pk = None

    def __init__(self, credential: IntegrationCredential):
        self.credential = credential
        self.tenant_id = credential.tenant_id

    def __str__(self) -> str:
        return f"integration:{self.credential.name}"


def credential_from_basic(value: str) -> str:
    """The credential in ``Basic <credential>`` (raw, as seed 002's backend sends
    it) or in the standard ``Basic base64(user:password)`` with it as either part."""
    if value.startswith(keys.CREDENTIAL_PREFIX):
        return value
    try:
        decoded = base64.b64decode(value, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""
    for part in decoded.split(":", 1):
        if part.startswith(keys.CREDENTIAL_PREFIX):
            return part
    return ""


class IntegrationCredentialAuthentication(BaseAuthentication):
    """``Authorization: Basic <integration credential>``."""

    def authenticate(self, request: Request):
        header = request.META.get("HTTP_AUTHORIZATION")
        if header is None:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        credential = integration_credential_authenticate(credential_from_basic(value))
        if credential is None:
            raise InvalidToken("The integration credential is invalid or revoked.")
        return IntegrationUser(credential), CredentialContext(credential)

    def authenticate_header(self, request: Request) -> str:
        return 'Basic realm="iam"'
