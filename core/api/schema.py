"""Shared pieces of the OpenAPI description."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent, get_class
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorDetail",
            fields={
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "fields": serializers.DictField(
                    child=serializers.ListField(child=serializers.CharField()), required=False
                ),
                "missing_permissions": serializers.ListField(child=serializers.CharField(), required=False),
            },
        )
    },
)


def _error(status: int, description: str, code: str, message: str, fields: dict | None = None) -> OpenApiResponse:
    body = {"error": {"code": code, "message": message, **({"fields": fields} if fields else {})}}
    return OpenApiResponse(
        ErrorSerializer,
        description=description,
        examples=[OpenApiExample(code, value=body, status_codes=[str(status)], response_only=True)],
    )


def example(name: str, value, status: str = "200") -> OpenApiExample:
    return OpenApiExample(name, value=value, response_only=True, status_codes=[status])


def request_example(name: str, value) -> OpenApiExample:
    return OpenApiExample(name, value=value, request_only=True)


TOKEN_EXAMPLE = {
    "id": 7,
    "name": "Nightly import",
    "kind": "personal",
    "prefix": "pat_Xy12Ab",
    "application": "crm",
    "roles": ["crm_reader"],
    "status": "active",
    "createdAt": "2026-11-23T09:00:00Z",
    "expiresAt": "2026-12-23T09:00:00Z",
    "lastUsedAt": None,
    "lastUsedIp": None,
}

ERROR_RESPONSES = {
    400: _error(
        400,
        "Invalid input, with per-field messages; or a malformed request (a NUL character, a body that is not JSON).",
        "validation_failed",
        "Some fields are invalid.",
        {"name": ["Enter a token name."]},
    ),
    401: _error(
        401,
        "Missing, malformed, unknown, expired, revoked or inactive credential.",
        "invalid_token",
        "The access token is invalid, expired or revoked.",
    ),
    403: _error(
        403,
        "The credential lacks a permission, or a rule refuses the operation.",
        "missing_permission",
        "The token lacks the permission iam.tokens.manage.",
    ),
    404: _error(404, "Not found (or not visible to this credential).", "not_found", "Not found."),
    409: _error(
        409,
        "The object's state does not allow this.",
        "token_revoked",
        "This token was revoked by an administrator and cannot be renamed. You can only delete it.",
    ),
    413: _error(
        413,
        "The body is larger than the service takes (DATA_UPLOAD_MAX_MEMORY_SIZE).",
        "request_too_large",
        "The request body is larger than 2621440 bytes.",
    ),
    415: _error(
        415, "The body is not JSON.", "unsupported_media_type", 'Unsupported media type "text/plain" in request.'
    ),
    429: _error(
        429, "Rate limited; see Retry-After.", "rate_limited", "Too many token creations: at most 10 per 60 seconds."
    ),
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """The API's error answers with these status codes, for ``extend_schema(responses=...)``.

    Every operation can answer 400: the NUL check (``core.middleware``) refuses
    any request carrying one. Every authenticated one can answer 401 and 429
    (too many failed authentications from the address, or requests with the
    token); every one with a JSON body 413 and 415.
    """
    return {code: ERROR_RESPONSES[code] for code in codes}


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "tokens.authentication.BearerTokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal access token (pat_…) or an access token from /oauth/token.",
        }


class IntegrationCredentialScheme(OpenApiAuthenticationExtension):
    target_class = "tokens.authentication.IntegrationCredentialAuthentication"
    name = "integrationCredential"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Basic <integration credential>` (itc_…), as ToolJet's embedding API expects.",
        }


OAUTH_CLIENT_SCHEME = "oauthClientBasic"
OAUTH_CLIENT_AUTHENTICATION = (
    "Client authentication (RFC 6749 §2.3.1), one method per request: `client_secret_basic` "
    "(`Authorization: Basic base64(client_id:client_secret)`, each form-urlencoded first) or "
    "`client_secret_post` (`client_id` and `client_secret` as parameters of the form body, which "
    "no OpenAPI security scheme can express)."
)


class Schema(AutoSchema):
    """The API's schema class: a request serializer already named ``…Request`` keeps its
    name (drf-spectacular would call its request component ``…RequestRequest``)."""

    def _get_serializer_name(self, serializer, direction, bypass_extensions=False) -> str:
        name = super()._get_serializer_name(serializer, direction, bypass_extensions)
        return name.removesuffix("Request") if name.endswith("RequestRequest") else name


class OAuthClientSchema(Schema):
    """The schema of the /oauth endpoints that authenticate an OAuth client:
    the views check the client themselves (in RFC 6749's error format), so no
    DRF authenticator announces it. Basic is the security requirement, and the
    request bodies document ``client_id`` and ``client_secret`` as the
    alternative; never the anonymous ``{}``."""

    def get_auth(self):
        self.registry.register_on_missing(
            ResolvedComponent(
                name=OAUTH_CLIENT_SCHEME,
                type=ResolvedComponent.SECURITY_SCHEMA,
                object=OAUTH_CLIENT_SCHEME,
                schema={"type": "http", "scheme": "basic", "description": OAUTH_CLIENT_AUTHENTICATION},
            )
        )
        return [{OAUTH_CLIENT_SCHEME: []}]


def _map_without_base_docstring(extension: OpenApiSerializerExtension, auto_schema, direction) -> dict:
    """The serializer's schema, described by its own docstring only: the base
    class's explains the code, not the request."""
    schema = auto_schema._map_serializer(extension.target, direction, bypass_extensions=True)
    if not get_class(extension.target).__dict__.get("__doc__"):
        schema.pop("description", None)
    return schema


class StrictSerializerScheme(OpenApiSerializerExtension):
    """What ``StrictSerializer`` enforces, stated in the schema: no unknown
    fields, exactly one field of each ``exactly_one_of`` group, one or more of ``at_least_one_of``."""

    target_class = "core.api.serializers.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = _map_without_base_docstring(self, auto_schema, direction)
        schema["additionalProperties"] = False
        groups = [{"oneOf": [{"required": [name]} for name in group]} for group in self.target.exactly_one_of]
        if self.target.at_least_one_of:
            groups.append({"anyOf": [{"required": [name]} for name in self.target.at_least_one_of]})
        if groups:
            schema["allOf"] = groups
        return schema


class FormParametersScheme(OpenApiSerializerExtension):
    """OAuth form parameters: unknown ones are allowed (and ignored), each a single string."""

    target_class = "tokens.api.oauth.FormParameters"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = _map_without_base_docstring(self, auto_schema, direction)
        schema["additionalProperties"] = {"type": "string", "maxLength": get_class(self.target).max_length}
        return schema
