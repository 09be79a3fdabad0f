"""``GET /auth/forward``: the gateway a reverse proxy asks before each request (see ``tokens.gateway``)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.schema import errors
from tokens.authentication import BearerTokenAuthentication
from tokens.gateway import gateway_audience, gateway_client_ip, gateway_verdict, identity_headers


class GatewayBearerAuthentication(BearerTokenAuthentication):
    """The API's bearer authentication, with the client's address as the proxy saw it (limits, allowlists),
    that also takes access tokens exchanged for the application the request is for."""

    def client_address(self, request: Request) -> str | None:
        return gateway_client_ip(request)

    def also_audience(self, request: Request) -> str | None:
        return gateway_audience(request)


def _header(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.STR, OpenApiParameter.HEADER, description=description)


class ForwardAuthView(APIView):
    authentication_classes = [GatewayBearerAuthentication]

    @extend_schema(
        operation_id="gateway_forward",
        summary="Forward authentication: may this token make the proxied request?",
        description=(
            "For reverse proxies (nginx `auth_request`, Traefik `ForwardAuth`, Caddy `forward_auth`). The token "
            "is the client's `Authorization: Bearer …`; the application is named by `X-IAM-Application` or found "
            "by `X-Forwarded-Host`; its route rules say which permissions the original request needs. "
            "200 carries the identity headers for the application; 401 is the API's answer to any bad token; "
            "403 names what is missing (also in `X-Auth-Missing-Permissions`)."
        ),
        parameters=[
            _header("X-Forwarded-Method", "The original request's method (or X-Original-Method)."),
            _header("X-Forwarded-Uri", "The original request's path and query (or X-Original-URI)."),
            _header("X-Forwarded-Host", "The original request's host, matched against the applications' host names."),
            _header("X-IAM-Application", "The application's slug, instead of the host name."),
            _header("X-Forwarded-For", "The client's address; read only from GATEWAY_TRUSTED_PROXIES."),
        ],
        responses={
            200: OpenApiResponse(
                description="Allowed. Headers X-Auth-User, X-Auth-User-Id, X-Auth-Email, X-Auth-Tenant, "
                "X-Auth-Application, X-Auth-Token-Id, X-Auth-Permissions (space-separated)."
            ),
            **errors(400, 401, 403, 404, 429),
        },
        auth=[{"bearerToken": []}],  # the API's bearer scheme (this subclass only reads the address differently)
        tags=["gateway"],
    )
    def get(self, request: Request) -> Response:
        verdict = gateway_verdict(request, request.auth)
        rule = verdict.decision.rule
        response = Response(
            {"allowed": True, "application": verdict.gateway.slug, "rule": rule.number if rule else None}
        )
        for name, value in identity_headers(request.auth, verdict).items():
            response[name] = value
        return response

    head = get

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        missing = (getattr(exc, "extra", None) or {}).get("missing_permissions")
        if missing:  # for proxies that show the client nothing of the body
            response["X-Auth-Missing-Permissions"] = " ".join(missing)
        return response
