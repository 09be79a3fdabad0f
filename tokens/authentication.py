"""Bearer-token authentication for the API."""

from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from iam.exceptions import InvalidToken
from iam.http import client_ip
from iam.models import User
from tokens.services import TokenContext, token_authenticate


class PersonalAccessTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <pat>``.

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
        context = token_authenticate(credential, ip=client_ip(request))
        if context is None:
            raise InvalidToken()
        return context.owner, context

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="iam"'
