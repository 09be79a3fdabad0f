from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.schema import errors
from core.api.serializers import StrictCharField, StrictSerializer
from core.errors import IllegalTransition, NotPermitted
from core.http import client_ip
from core.ratelimit import rate_limit_enforce
from tokens.api.management import RotatedTokenSerializer, RotateRequestSerializer, rotate_answer
from tokens.services import token_report_leaked
from tokens.verification import AccessTokenContext, TokenContext


class MeView(APIView):
    """Who the credential is: user, tenant, application, token and effective permissions."""

    class MeResponseSerializer(serializers.Serializer):
        user = inline_serializer(
            name="MeUser",
            fields={
                "id": serializers.IntegerField(),
                "username": serializers.CharField(),
                "email": serializers.EmailField(),
            },
        )
        tenant = inline_serializer(
            name="MeTenant",
            fields={"id": serializers.IntegerField(), "slug": serializers.CharField(), "name": serializers.CharField()},
        )
        application = inline_serializer(
            name="MeApplication",
            allow_null=True,
            fields={"id": serializers.UUIDField(), "slug": serializers.CharField(), "name": serializers.CharField()},
        )
        token = inline_serializer(
            name="MeToken",
            fields={
                "id": serializers.IntegerField(),
                "name": serializers.CharField(),
                "prefix": serializers.CharField(),
                "administrative": serializers.BooleanField(),
                "expires_at": serializers.DateTimeField(),
            },
        )
        permissions = serializers.ListField(child=serializers.CharField())

    @staticmethod
    def describe(context: TokenContext) -> dict:
        token, owner, application = context.token, context.token.owner, context.token.application
        return {
            "user": {"id": owner.pk, "username": owner.username, "email": owner.email},
            "tenant": {"id": token.tenant.pk, "slug": token.tenant.slug, "name": token.tenant.name},
            "application": (
                {"id": application.pk, "slug": application.slug, "name": application.name} if application else None
            ),
            "token": {
                "id": token.pk,
                "name": token.name,
                "prefix": token.display_prefix,
                "administrative": token.is_administrative,
                "expires_at": token.expires_at,
            },
            "permissions": sorted(context.permissions),
        }

    @extend_schema(
        operation_id="me",
        summary="Describe the credential of this request",
        description="Works with a PAT or an access token from the token exchange (`Authorization: Bearer …`).",
        responses={200: MeResponseSerializer, **errors(400, 401, 429)},
        examples=[
            OpenApiExample(
                "Alice's CRM token",
                response_only=True,
                status_codes=["200"],
                value={
                    "user": {"id": 1, "username": "alice", "email": "alice@acme.example"},
                    "tenant": {"id": 1, "slug": "acme", "name": "Acme Corporation"},
                    "application": {"id": "8ba8bf0e-6b8f-4e07-abb9-6fd2d816fabc", "slug": "crm", "name": "CRM"},
                    "token": {
                        "id": 7,
                        "name": "my script",
                        "prefix": "pat_Xy12Ab",
                        "administrative": False,
                        "expires_at": "2026-12-23T11:27:17Z",
                    },
                    "permissions": ["crm.contacts.read", "crm.orders.read"],
                },
            )
        ],
        tags=["tokens"],
    )
    def get(self, request: Request) -> Response:
        return Response(self.MeResponseSerializer(self.describe(request.auth)).data)


class LeakReportView(APIView):
    """Anyone holding a token's full text can report it leaked; it is revoked at once.

    The answer is the same whether or not the token existed, so the endpoint
    cannot be used to test guesses; it is rate limited per client address.
    """

    authentication_classes = []
    permission_classes = [AllowAny]

    class LeakReportRequestSerializer(StrictSerializer):
        token = StrictCharField(max_length=200)

    @extend_schema(
        operation_id="token_report_leaked",
        summary="Report a leaked token (revokes it and tells its owner)",
        request=LeakReportRequestSerializer,
        responses={
            202: inline_serializer(name="LeakReportReceived", fields={"status": serializers.CharField()}),
            **errors(400, 413, 415, 429),
        },
        tags=["tokens"],
    )
    def post(self, request: Request) -> Response:
        ip = client_ip(request)
        rate_limit_enforce(f"leak-report:{ip}", limit=settings.LEAK_REPORTS_PER_MINUTE, window=60, what="leak reports")
        data = self.LeakReportRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # A pasted token often brings a newline along; the answer is the same either way.
        token_report_leaked(data.validated_data["token"].strip(), ip=ip)
        return Response({"status": "received"}, status=status.HTTP_202_ACCEPTED)


class SelfRotateView(APIView):
    """The token of the request regenerates itself (GitLab's ``/self/rotate``)."""

    @extend_schema(
        operation_id="token_self_rotate",
        summary="Regenerate the token of this request: its successor, with a new secret shown once",
        description="A PAT used as `Authorization: Bearer …` gets a new secret, keeping its name, application "
        "and permissions. The old secret stops at once, or after `gracePeriodSeconds` (at most 86400). Any use "
        "of it after that revokes the token. An exchanged access token cannot regenerate its PAT.",
        request=RotateRequestSerializer,
        responses={
            201: OpenApiResponse(RotatedTokenSerializer, description="The token, with its new secret `token`."),
            **errors(400, 401, 403, 409, 413, 415, 429),
        },
        examples=[
            OpenApiExample(
                "Request", request_only=True, value={"expiresAt": "2027-03-01T00:00:00Z", "gracePeriodSeconds": 3600}
            )
        ],
        tags=["tokens"],
    )
    def post(self, request: Request) -> Response:
        context = request.auth
        if isinstance(context, AccessTokenContext):
            raise NotPermitted("Only a personal access token can regenerate itself.", code="pat_required")
        if context.by_replaced_secret:
            raise IllegalTransition(
                "This secret has been replaced: regenerate with the current one.", code="secret_replaced"
            )
        return rotate_answer(request, token=context.token, actor=None, by_itself=True)
