"""Management API for users' tokens (Logto's, seed 004), scoped to a tenant.

Callers: an administrative PAT (or exchanged token) with ``iam.tokens.manage``
whose owner administers the user's tenant, or an integration credential of
the tenant with the ``tokens.manage`` scope.
"""

from datetime import timedelta

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.schema import errors
from core.api.serializers import (
    StrictCharField,
    StrictDateTimeField,
    StrictIntegerField,
    StrictListField,
    StrictSerializer,
    StrictSlugField,
    StrictUUIDField,
)
from core.errors import NotPermitted, ValidationFailed
from core.http import client_ip
from core.permissions import HasTokenPermissions
from iam.models import AdminPermission, User
from iam.selectors import user_administers_tenant_users
from tenants.models import Application
from tokens.authentication import BearerTokenAuthentication, CredentialContext, IntegrationCredentialAuthentication
from tokens.credentials import credential_label
from tokens.models import IntegrationCredential, PersonalAccessToken, RevocationCause, TokenStatus
from tokens.rules import token_states
from tokens.services import (
    MAX_GRACE,
    token_creation_limit,
    token_issue_for_user,
    token_rename,
    token_revoke,
    token_rotate,
)


class CanManageTokens(HasTokenPermissions):
    """A token needs ``iam.tokens.manage``; an integration credential, its scope ``tokens.manage``."""

    def has_permission(self, request, view) -> bool:
        context = request.auth
        if not isinstance(context, CredentialContext):
            return super().has_permission(request, view)
        if IntegrationCredential.Scope.TOKENS_MANAGE in context.permissions:
            return True
        raise NotPermitted("The integration credential lacks the scope tokens.manage.", code="missing_scope")


class ManagementView(APIView):
    # The URL's ``userId`` is Logto's name for it (seed 004); the README and the schema say the same.
    authentication_classes = [BearerTokenAuthentication, IntegrationCredentialAuthentication]
    permission_classes = [CanManageTokens]
    required_permissions = [AdminPermission.TOKENS_MANAGE]

    def target_user(self, request: Request, user_id: int) -> User:
        """The user addressed in the URL, if the caller may manage their tokens (404 otherwise)."""
        user = get_object_or_404(User.objects.select_related("tenant"), pk=user_id)
        context = request.auth
        allowed = (
            context.credential.tenant_id == user.tenant_id
            if isinstance(context, CredentialContext)
            else user_administers_tenant_users(request.user, user.tenant_id)
        )
        if not allowed:
            raise NotFound()
        return user

    def actor(self, request: Request) -> tuple[User | None, str | None]:
        context = request.auth
        if isinstance(context, CredentialContext):
            return None, credential_label(context.credential)
        return request.user, None

    def token_by_name(self, user: User, name: str) -> PersonalAccessToken:
        return get_object_or_404(
            PersonalAccessToken.objects.exclude(status=TokenStatus.DELETED).select_related("application"),
            owner=user,
            name=name,
        )


class TokenSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    purpose = serializers.CharField()
    kind = serializers.CharField()
    prefix = serializers.CharField(source="display_prefix")
    application = serializers.SerializerMethodField()
    roles = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at")
    expiresAt = serializers.DateTimeField(source="expires_at")
    lastUsedAt = serializers.DateTimeField(source="last_used_at", allow_null=True)
    lastUsedIp = serializers.CharField(source="last_used_ip", allow_null=True)
    allowedNetworks = serializers.ListField(
        child=serializers.CharField(), source="allowed_networks", help_text="CIDR ranges; empty: any address."
    )
    lastRefusedIp = serializers.CharField(
        source="last_refused_ip", allow_null=True, help_text="The last address refused for being outside them."
    )
    lastRefusedAt = serializers.DateTimeField(source="last_refused_at", allow_null=True)

    def get_application(self, token) -> str | None:
        return token.application.slug if token.application else None

    def get_roles(self, token) -> list[str]:
        return sorted(role.code for role in token.roles.all())

    def get_status(self, token) -> str:
        return self.context["states"][token.pk].status


class CreatedTokenSerializer(TokenSerializer):
    token = serializers.CharField(help_text="The token's secret, shown this once.")


def serialize_tokens(tokens: list[PersonalAccessToken]) -> list[dict]:
    return TokenSerializer(tokens, many=True, context={"states": token_states(tokens)}).data


class RotateRequestSerializer(StrictSerializer):
    expiresAt = StrictDateTimeField(
        required=False,
        help_text="The new secret's expiry, as at creation. Default: as far ahead as the current secret's lifetime.",
    )
    gracePeriodSeconds = StrictIntegerField(
        required=False,
        min_value=0,
        max_value=int(MAX_GRACE.total_seconds()),
        help_text="How long the old secret keeps working (default 0: it stops at once).",
    )


class RotatedTokenSerializer(CreatedTokenSerializer):
    previousSecretWorksUntil = serializers.DateTimeField(help_text="When the old secret stops working.")


def rotate_answer(request: Request, **rotation) -> Response:
    """Regenerate a token from the validated request and answer with its new secret (201)."""
    data = RotateRequestSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    fields = data.validated_data
    token_creation_limit(f"user:{rotation['token'].owner_id}")
    try:
        with transaction.atomic():  # as at creation: a 503 means no new secret was issued
            issued = token_rotate(
                **rotation,
                expires_at=fields.get("expiresAt"),
                grace=timedelta(seconds=fields.get("gracePeriodSeconds", 0)),
                ip=client_ip(request),
            )
            body = serialize_tokens([issued.token])[0]
            body["previousSecretWorksUntil"] = issued.token.rotated_secrets.first().works_until
    except ValidationFailed as error:
        names = {"expires_at": "expiresAt", "grace": "gracePeriodSeconds"}
        raise ValidationFailed({names.get(name, name): texts for name, texts in error.fields.items()}) from None
    body["token"] = issued.plaintext
    return Response(body, status=status.HTTP_201_CREATED)


class UserTokenListView(ManagementView):
    class TokenCreateRequestSerializer(StrictSerializer):
        name = StrictCharField(max_length=100)
        purpose = StrictCharField(max_length=500, required=False, allow_blank=True)
        expiresAt = StrictDateTimeField()
        applicationId = StrictUUIDField(required=False)
        applicationSlug = StrictSlugField(required=False, max_length=50)
        roles = StrictListField(child=StrictCharField(max_length=100), min_length=1, max_length=50)
        allowedNetworks = StrictListField(
            child=StrictCharField(max_length=50),
            required=False,
            max_length=50,
            help_text="CIDR ranges (IPv4, IPv6) it may be used from, within the tenant's. Default: any address.",
        )

        exactly_one_of = (("applicationId", "applicationSlug"),)

    @extend_schema(
        operation_id="user_tokens_list",
        summary="List a user's personal access tokens (never their secrets)",
        responses={
            200: TokenSerializer(many=True),
            **errors(400, 401, 403, 404, 429),
        },
        tags=["management"],
    )
    def get(self, request: Request, userId: int) -> Response:
        user = self.target_user(request, userId)
        tokens = list(
            PersonalAccessToken.objects.filter(owner=user)
            .exclude(status=TokenStatus.DELETED)
            .select_related("application")
            .prefetch_related("roles")
            .order_by("-created_at")
        )
        return Response(serialize_tokens(tokens))

    @extend_schema(
        operation_id="user_tokens_create",
        summary="Create a token for a user (off unless the tenant allows administrators to)",
        request=TokenCreateRequestSerializer,
        responses={
            201: OpenApiResponse(CreatedTokenSerializer, description="The token, with its secret `token` shown once."),
            **errors(400, 401, 403, 404, 413, 415, 429),
        },
        examples=[
            OpenApiExample(
                "Request",
                request_only=True,
                value={
                    "name": "Nightly import",
                    "purpose": "Imports orders from the web shop every night",
                    "expiresAt": "2027-01-31T00:00:00Z",
                    "applicationSlug": "crm",
                    "roles": ["crm_reader"],
                },
            )
        ],
        tags=["management"],
    )
    def post(self, request: Request, userId: int) -> Response:
        user = self.target_user(request, userId)
        token_creation_limit(f"user:{user.pk}")
        data = self.TokenCreateRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        application_field = "applicationId" if "applicationId" in fields else "applicationSlug"
        lookup = "pk" if application_field == "applicationId" else "slug"
        application = Application.objects.filter(**{lookup: fields[application_field]}).first()
        if application is None:
            raise ValidationError({application_field: ["No such application."]})
        actor, label = self.actor(request)
        try:
            # The answer is built in the write's transaction: a database failure
            # after the insert undoes it, so a 503 means nothing was issued
            # (rather than a token whose secret the client never saw).
            with transaction.atomic():
                issued = token_issue_for_user(
                    owner=user,
                    actor=actor,
                    actor_label=label,
                    application=application,
                    name=fields["name"],
                    purpose=fields.get("purpose"),
                    allowed_networks=fields.get("allowedNetworks"),
                    expires_at=fields["expiresAt"],
                    role_codes=fields["roles"],
                    ip=client_ip(request),
                )
                body = serialize_tokens([issued.token])[0]
        except ValidationFailed as error:
            # The service names its arguments; the client should see the fields it sent.
            names = {"expires_at": "expiresAt", "application": application_field, "allowed_networks": "allowedNetworks"}
            renamed = {names.get(name, name): texts for name, texts in error.fields.items()}
            raise type(error)(renamed, error.message) from None  # a NameTaken stays a 409
        body["token"] = issued.plaintext
        return Response(body, status=status.HTTP_201_CREATED)


class UserTokenDetailView(ManagementView):
    class TokenRenameRequestSerializer(StrictSerializer):
        name = StrictCharField(max_length=100, required=False)
        purpose = StrictCharField(max_length=500, required=False, allow_blank=True)
        at_least_one_of = ("name", "purpose")

    @extend_schema(
        operation_id="user_tokens_rename",
        summary="Rename a user's token or change its purpose",
        request=TokenRenameRequestSerializer,
        responses={
            200: TokenSerializer,
            **errors(400, 401, 403, 404, 409, 413, 415, 429),
        },
        tags=["management"],
    )
    def patch(self, request: Request, userId: int, name: str) -> Response:
        user = self.target_user(request, userId)
        token = self.token_by_name(user, name)
        data = self.TokenRenameRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        actor, label = self.actor(request)
        with transaction.atomic():  # as in post: a 503 means the rename did not happen
            token = token_rename(
                token=token,
                name=data.validated_data.get("name"),
                purpose=data.validated_data.get("purpose"),
                actor=actor,
                actor_label=label,
                ip=client_ip(request),
            )
            body = serialize_tokens([token])[0]
        return Response(body)

    @extend_schema(
        operation_id="user_tokens_delete",
        summary="End a user's token (an administrator's delete is a revocation: irreversible)",
        responses={
            204: OpenApiResponse(description="Revoked."),
            **errors(400, 401, 403, 404, 429),
        },
        tags=["management"],
    )
    def delete(self, request: Request, userId: int, name: str) -> Response:
        user = self.target_user(request, userId)
        token = self.token_by_name(user, name)
        actor, label = self.actor(request)
        token_revoke(
            token=token,
            actor=actor,
            cause=RevocationCause.INTEGRATION if actor is None else RevocationCause.ADMINISTRATOR,
            actor_label=label,
            ip=client_ip(request),
            reason="Ended through the management API.",
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class UserTokenRotateView(ManagementView):
    @extend_schema(
        operation_id="user_tokens_rotate",
        summary="Regenerate a user's token (GitLab's rotate; off unless the tenant allows administrators to issue)",
        description="The token keeps its name, application and permissions and gets a new secret, returned once. "
        "The old secret stops at once or after `gracePeriodSeconds`; any use of it after that revokes the token.",
        request=RotateRequestSerializer,
        responses={
            201: OpenApiResponse(RotatedTokenSerializer, description="The token, with its new secret `token`."),
            **errors(400, 401, 403, 404, 409, 413, 415, 429),
        },
        tags=["management"],
    )
    def post(self, request: Request, userId: int, name: str) -> Response:
        user = self.target_user(request, userId)
        token = self.token_by_name(user, name)
        actor, label = self.actor(request)
        return rotate_answer(request, token=token, actor=actor, actor_label=label)
