"""OAuth 2.0 endpoints: token (RFC 8693 exchange), introspection (RFC 7662),
revocation (RFC 7009), JWKS and metadata (RFC 8414).

These speak OAuth's own error format (RFC 6749 §5.2), not the API's, and
read their parameters from the form-encoded body only, as the RFCs require.
"""

import base64
import binascii
from urllib.parse import unquote_plus

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import exceptions, serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.parsers import FormParser
from core.api.schema import OAUTH_CLIENT_AUTHENTICATION, OAuthClientSchema, errors, example, request_example
from core.errors import RequestTooLarge
from core.http import client_ip
from tokens.models import OAuthClient
from tokens.oauth import (
    ACCESS_TOKEN_TYPE,
    GRANT_TOKEN_EXCHANGE,
    PAT_TOKEN_TYPES,
    OAuthError,
    introspect,
    oauth_client_authenticate,
    revoke,
    token_exchange,
)
from tokens.signing import issuer, jwks

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# Longer than any token, scope or URI this service issues or accepts.
MAX_PARAMETER_LENGTH = 8192

OAuthErrorSerializer = inline_serializer(
    name="OAuthError", fields={"error": serializers.CharField(), "error_description": serializers.CharField()}
)
OAuthBadRequest = OpenApiResponse(OAuthErrorSerializer, description="An RFC 6749 error (§5.2).")


def _parameter(**kwargs) -> serializers.CharField:
    return serializers.CharField(max_length=MAX_PARAMETER_LENGTH, **kwargs)


CLIENT_ID_HELP = "client_secret_post (RFC 6749 §2.3.1): the client's id, with client_secret."
CLIENT_SECRET_HELP = "client_secret_post: the client's secret, instead of a Basic header (not both)."


class FormParameters(serializers.Serializer):
    """An OAuth request's form parameters, for the schema (the views read them
    themselves): each a string given once; unknown ones are ignored (RFC 6749 §3.2)."""

    max_length = MAX_PARAMETER_LENGTH


class TokenExchangeRequest(FormParameters):
    grant_type = serializers.ChoiceField(choices=[GRANT_TOKEN_EXCHANGE])
    subject_token = _parameter()
    subject_token_type = serializers.ChoiceField(choices=list(PAT_TOKEN_TYPES))
    scope = _parameter(required=False, allow_blank=True)
    resource = serializers.ListField(child=_parameter(), required=False, help_text="Repeatable (RFC 8693 §2.1).")
    audience = serializers.ListField(child=_parameter(), required=False, help_text="Repeatable (RFC 8693 §2.1).")
    actor_token = _parameter(required=False, help_text="Refused: delegation is not offered.")
    actor_token_type = _parameter(required=False)
    client_id = _parameter(required=False, allow_blank=True, help_text=CLIENT_ID_HELP)
    client_secret = _parameter(required=False, allow_blank=True, help_text=CLIENT_SECRET_HELP)


# RFC 8693 §2.1: the parameters a token exchange may repeat.
REPEATABLE = ("resource", "audience")


class TokenRequest(FormParameters):
    """A token to introspect or revoke (RFC 7662, RFC 7009)."""

    token = _parameter()
    token_type_hint = _parameter(required=False, allow_blank=True)
    client_id = _parameter(required=False, allow_blank=True, help_text=CLIENT_ID_HELP)
    client_secret = _parameter(required=False, allow_blank=True, help_text=CLIENT_SECRET_HELP)


def oauth_error(error: OAuthError) -> Response:
    headers = dict(NO_STORE)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="oauth"'
    return Response(
        {"error": error.error, "error_description": error.description}, status=error.status, headers=headers
    )


class OAuthView(APIView):
    # The client is authenticated by the view (client_secret_basic or _post), in RFC 6749's error format.
    authentication_classes = []
    permission_classes = [AllowAny]
    parser_classes = [FormParser]
    schema = OAuthClientSchema()

    def handle_exception(self, exc):
        if isinstance(exc, OAuthError):
            return oauth_error(exc)
        if isinstance(exc, RequestDataTooBig):
            too_large = RequestTooLarge()
            return oauth_error(OAuthError("invalid_request", str(too_large.detail), status=too_large.status_code))
        if isinstance(exc, exceptions.UnsupportedMediaType):
            return oauth_error(OAuthError("invalid_request", "Send parameters as application/x-www-form-urlencoded."))
        if isinstance(exc, exceptions.ParseError):
            return oauth_error(OAuthError("invalid_request", str(exc.detail)))
        if isinstance(exc, exceptions.MethodNotAllowed):
            return oauth_error(OAuthError("invalid_request", "Use POST.", status=405))
        return super().handle_exception(exc)

    def params(self, request: Request, repeatable: tuple[str, ...] = ()) -> dict:
        """The body's parameters; each may appear once (those in ``repeatable``
        any number of times, as a list), and one without a value counts as
        omitted (RFC 6749 §3.1)."""
        data = request.data
        if not hasattr(data, "lists"):
            raise OAuthError("invalid_request", "Send parameters as application/x-www-form-urlencoded.")
        params = {}
        for key, values in data.lists():
            if len(values) > 1 and key not in repeatable:
                raise OAuthError("invalid_request", f"The parameter {key} is repeated.")
            for value in values:
                if len(value) > MAX_PARAMETER_LENGTH:
                    raise OAuthError("invalid_request", f"The parameter {key} is longer than {MAX_PARAMETER_LENGTH}.")
            present = [value for value in values if value]
            if present:
                params[key] = present if key in repeatable else present[0]
        return params

    def client_and_token(self, request: Request) -> tuple[OAuthClient, str]:
        """The authenticated client and the ``token`` parameter (RFC 7662 and 7009)."""
        params = self.params(request)
        client = self.client(request, params)
        if not params.get("token"):
            raise OAuthError("invalid_request", "token is required.")
        return client, params["token"]

    def client(self, request: Request, params: dict[str, str]) -> OAuthClient:
        """Authenticate the client with client_secret_basic or client_secret_post (not both)."""
        header = request.META.get("HTTP_AUTHORIZATION", "")
        posted = "client_secret" in params
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "basic" or posted:
                raise OAuthError("invalid_request", "Use exactly one client authentication method.")
            try:
                client_id, _, secret = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise OAuthError("invalid_client", "Malformed client credentials.", status=401) from None
            client_id, secret = unquote_plus(client_id), unquote_plus(secret)
        elif posted:
            client_id, secret = params.get("client_id", ""), params.get("client_secret", "")
        else:
            raise OAuthError("invalid_client", "Client authentication is required.", status=401)
        client = oauth_client_authenticate(client_id, secret)
        if client is None:
            raise OAuthError("invalid_client", "Unknown client or wrong secret.", status=401)
        return client


class TokenView(OAuthView):
    @extend_schema(
        operation_id="oauth_token",
        summary="Exchange a personal access token for an access token (RFC 8693)",
        description=(
            f"`subject_token_type` is `{PAT_TOKEN_TYPES[0]}` or Logto's `{PAT_TOKEN_TYPES[1]}`. Optional "
            f"`scope`, `resource`/`audience`. {OAUTH_CLIENT_AUTHENTICATION}"
        ),
        request={"application/x-www-form-urlencoded": TokenExchangeRequest},
        responses={
            200: inline_serializer(
                name="TokenExchangeResponse",
                fields={
                    "access_token": serializers.CharField(),
                    "issued_token_type": serializers.CharField(),
                    "token_type": serializers.CharField(),
                    "expires_in": serializers.IntegerField(),
                    "scope": serializers.CharField(),
                },
            ),
            400: OAuthBadRequest,
            401: OAuthErrorSerializer,
            413: OAuthErrorSerializer,
        },
        examples=[
            OpenApiExample(
                "Exchanged",
                response_only=True,
                status_codes=["200"],
                value={
                    "access_token": "eyJhbGciOiJSUzI1NiIs…",
                    "issued_token_type": ACCESS_TOKEN_TYPE,
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "scope": "crm.orders.read",
                },
            )
        ],
        tags=["oauth"],
    )
    def post(self, request: Request) -> Response:
        params = self.params(request, repeatable=REPEATABLE)
        client = self.client(request, params)
        if params.get("grant_type") != GRANT_TOKEN_EXCHANGE:
            if not params.get("grant_type"):
                raise OAuthError("invalid_request", "grant_type is required.")
            raise OAuthError("unsupported_grant_type", f"Only {GRANT_TOKEN_EXCHANGE} is supported.")
        for required in ("subject_token", "subject_token_type"):
            if not params.get(required):
                raise OAuthError("invalid_request", f"{required} is required.")
        if "actor_token" in params or "actor_token_type" in params:
            if "actor_token" not in params or "actor_token_type" not in params:
                raise OAuthError("invalid_request", "actor_token and actor_token_type go together (RFC 8693 §2.1).")
            raise OAuthError(
                "invalid_request", "Delegation (actor_token) is not offered: exchange the personal access token alone."
            )
        audiences = list(dict.fromkeys(params.get("resource", []) + params.get("audience", [])))
        body = token_exchange(
            client=client,
            subject_token=params["subject_token"],
            subject_token_type=params["subject_token_type"],
            scope=params.get("scope"),
            audiences=audiences or None,
            ip=client_ip(request),
        )
        return Response(body, headers=NO_STORE)


class IntrospectView(OAuthView):
    @extend_schema(
        operation_id="oauth_introspect",
        summary="Introspect a PAT, access token or embed session (RFC 7662)",
        description=OAUTH_CLIENT_AUTHENTICATION,
        request={"application/x-www-form-urlencoded": TokenRequest},
        responses={
            200: inline_serializer(
                name="IntrospectionResponse",
                fields={
                    "active": serializers.BooleanField(),
                    "scope": serializers.CharField(required=False),
                    "client_id": serializers.CharField(
                        required=False, help_text="The client an access token was issued to; absent for a PAT."
                    ),
                    "username": serializers.CharField(required=False),
                    "sub": serializers.CharField(required=False),
                    "exp": serializers.IntegerField(required=False),
                    "iat": serializers.IntegerField(required=False),
                    "token_type": serializers.CharField(required=False, help_text="Bearer (RFC 6749 §7.1)."),
                    "token_kind": serializers.ChoiceField(
                        ["personal_access_token", "access_token", "embed_session"], required=False
                    ),
                    "aud": serializers.ListField(child=serializers.CharField(), required=False),
                    "iss": serializers.CharField(required=False),
                    "tenant": serializers.CharField(required=False),
                    "application": serializers.CharField(required=False),
                },
            ),
            400: OAuthBadRequest,
            401: OAuthErrorSerializer,
            413: OAuthErrorSerializer,
        },
        examples=[
            request_example("Introspect", {"token": "eyJhbGciOiJSUzI1NiIs…"}),
            example(
                "Active",
                {
                    "active": True,
                    "scope": "crm.orders.read",
                    "client_id": "oc_…",
                    "username": "alice",
                    "sub": "1",
                    "exp": 1795430400,
                    "iat": 1795426800,
                    "token_type": "Bearer",
                    "token_kind": "access_token",
                    "aud": ["http://127.0.0.1:8000", "urn:iam:application:8ba8bf0e-6b8f-4e07-abb9-6fd2d816fabc"],
                    "iss": "http://127.0.0.1:8000",
                    "tenant": "acme",
                    "application": "8ba8bf0e-6b8f-4e07-abb9-6fd2d816fabc",
                },
            ),
            example("Inactive", {"active": False}),
        ],
        tags=["oauth"],
    )
    def post(self, request: Request) -> Response:
        client, token = self.client_and_token(request)
        return Response(introspect(client=client, value=token, ip=client_ip(request)), headers=NO_STORE)


class RevokeView(OAuthView):
    @extend_schema(
        operation_id="oauth_revoke",
        summary="Revoke an access token this client obtained (RFC 7009); a PAT is unsupported_token_type",
        description=OAUTH_CLIENT_AUTHENTICATION,
        request={"application/x-www-form-urlencoded": TokenRequest},
        responses={
            200: OpenApiResponse(description="Revoked, or not a token of this client (RFC 7009 §2.2)."),
            400: OAuthBadRequest,
            401: OAuthErrorSerializer,
            413: OAuthErrorSerializer,
        },
        examples=[
            request_example("Revoke", {"token": "eyJhbGciOiJSUzI1NiIs…"}),
            example(
                "A personal access token",
                {
                    "error": "unsupported_token_type",
                    "error_description": "Personal access tokens and embed sessions are not revoked by OAuth "
                    "clients: their owner or an administrator revokes them.",
                },
                "400",
            ),
            example(
                "Unknown client",
                {"error": "invalid_client", "error_description": "Unknown client or wrong secret."},
                "401",
            ),
        ],
        tags=["oauth"],
    )
    def post(self, request: Request) -> Response:
        client, token = self.client_and_token(request)
        revoke(client=client, value=token)
        return Response(status=200, headers=NO_STORE)


class JWKSView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="jwks",
        summary="The public keys that sign access tokens (RFC 7517)",
        responses={200: inline_serializer(name="JWKS", fields={"keys": serializers.ListField()}), **errors(400)},
        examples=[
            example(
                "Keys",
                {"keys": [{"kty": "RSA", "n": "…", "e": "AQAB", "kid": "2026-11", "use": "sig", "alg": "RS256"}]},
            )
        ],
        tags=["oauth"],
    )
    def get(self, request: Request) -> Response:
        return Response(jwks(), headers={"Cache-Control": "public, max-age=300"})


class MetadataView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="oauth_metadata",
        summary="Authorization server metadata (RFC 8414)",
        responses={
            200: inline_serializer(
                name="ServerMetadata",
                fields={"issuer": serializers.CharField(), "token_endpoint": serializers.CharField()},
            ),
            **errors(400),
        },
        examples=[
            example(
                "Metadata",
                {
                    "issuer": "http://127.0.0.1:8000",
                    "token_endpoint": "http://127.0.0.1:8000/oauth/token",
                    "jwks_uri": "http://127.0.0.1:8000/.well-known/jwks.json",
                },
            )
        ],
        tags=["oauth"],
    )
    def get(self, request: Request) -> Response:
        base = settings.PUBLIC_URL
        return Response(
            {
                "issuer": issuer(),
                "token_endpoint": f"{base}/oauth/token",
                "introspection_endpoint": f"{base}/oauth/introspect",
                "revocation_endpoint": f"{base}/oauth/revoke",
                "jwks_uri": f"{base}/.well-known/jwks.json",
                "grant_types_supported": [GRANT_TOKEN_EXCHANGE],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                # RFC 8414 requires it: "none" (no authorization endpoint, so nothing is issued through one).
                "response_types_supported": ["none"],
                "subject_token_types_supported": list(PAT_TOKEN_TYPES),
            }
        )
