"""The embedding API, drop-in compatible with ToolJet's (seeds 000 and 002)."""

from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Q
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.schema import ERROR_RESPONSES, errors
from core.api.serializers import (
    StrictEmailField,
    StrictIntegerField,
    StrictSerializer,
    StrictSlugField,
    StrictUUIDField,
)
from core.errors import NotPermitted
from core.http import client_ip
from iam.models import User
from tenants.models import MAX_TOKEN_LIFETIME_DAYS, Application
from tokens.authentication import CredentialContext, IntegrationCredentialAuthentication
from tokens.embedding import MAX_SESSION_MINUTES
from tokens.models import IntegrationCredential
from tokens.services import embed_token_issue, token_creation_limit


class HasCredentialScope(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        context = request.auth
        if not isinstance(context, CredentialContext):
            return False
        if view.required_scope not in context.permissions:
            raise NotPermitted(
                f"The integration credential lacks the scope {view.required_scope}.", code="missing_scope"
            )
        return True


class EmbedTokenView(APIView):
    """Issue an embedding token for a user and an application (ToolJet-compatible)."""

    authentication_classes = [IntegrationCredentialAuthentication]
    permission_classes = [HasCredentialScope]
    required_scope = IntegrationCredential.Scope.EMBED

    class EmbedTokenRequestSerializer(StrictSerializer):
        email = StrictEmailField(required=False, max_length=254, help_text="The user's email (or give userId).")
        userId = StrictIntegerField(required=False, min_value=1, help_text="The user's id (or give email).")
        appId = StrictUUIDField(required=False, help_text="The application's UUID (or give appSlug).")
        appSlug = StrictSlugField(required=False, max_length=50, help_text="The application's slug (or give appId).")
        sessionExpiry = StrictIntegerField(
            min_value=1, max_value=MAX_SESSION_MINUTES, help_text="Embed session duration in minutes."
        )
        patExpiry = StrictIntegerField(
            min_value=1, max_value=MAX_TOKEN_LIFETIME_DAYS * 86400, help_text="Token validity in seconds."
        )

        exactly_one_of = (("email", "userId"), ("appId", "appSlug"))

    class EmbedTokenResponseSerializer(serializers.Serializer):
        personalAccessToken = serializers.CharField()
        redirectUrl = serializers.URLField()

    @extend_schema(
        operation_id="embed_token_create",
        summary="Issue an embedding token (ToolJet-compatible)",
        description=(
            "`Authorization: Basic <integration credential>`. Revokes the user's previous embedding token for the "
            f"application. At most {settings.TOKEN_CREATIONS_PER_MINUTE} per minute per credential."
        ),
        request=EmbedTokenRequestSerializer,
        responses={
            201: EmbedTokenResponseSerializer,
            **errors(400, 401, 413, 415, 429),
            403: OpenApiResponse(ERROR_RESPONSES[403].response, description="The user has no access to the app."),
            404: OpenApiResponse(ERROR_RESPONSES[404].response, description="No such user in the tenant."),
        },
        examples=[
            OpenApiExample(
                "Request",
                request_only=True,
                value={
                    "email": "alice@acme.example",
                    "appId": "8ba8bf0e-6b8f-4e07-abb9-6fd2d816fabc",
                    "sessionExpiry": 60,
                    "patExpiry": 3600,
                },
            ),
            OpenApiExample(
                "Created",
                response_only=True,
                status_codes=["201"],
                value={
                    "personalAccessToken": "pat_…",
                    "redirectUrl": "http://127.0.0.1:8000/embed-apps/8ba8bf0e-6b8f-4e07-abb9-6fd2d816fabc"
                    "?personal-access-token=pat_…",
                },
            ),
        ],
        tags=["embedding"],
    )
    def post(self, request: Request) -> Response:
        credential = request.auth.credential
        token_creation_limit(f"credential:{credential.pk}")
        data = self.EmbedTokenRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        users = User.objects.filter(tenant_id=credential.tenant_id)
        user = (
            users.filter(Q(email__iexact=fields["email"])).first()
            if "email" in fields
            else users.filter(pk=fields["userId"]).first()
        )
        if user is None:
            raise NotFound("User not found.", code="user_not_found")
        application = Application.objects.filter(
            **({"pk": fields["appId"]} if "appId" in fields else {"slug": fields["appSlug"]})
        ).first()
        if application is None:
            raise NotPermitted("The user does not have access to this application.", code="no_application_access")
        issued = embed_token_issue(
            credential=credential,
            user=user,
            application=application,
            session_minutes=fields["sessionExpiry"],
            pat_seconds=fields["patExpiry"],
            ip=client_ip(request),
        )
        query = urlencode({"personal-access-token": issued.plaintext})
        body = {
            "personalAccessToken": issued.plaintext,
            "redirectUrl": f"{settings.PUBLIC_URL}/embed-apps/{application.pk}?{query}",
        }
        return Response(body, status=status.HTTP_201_CREATED)
