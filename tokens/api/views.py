from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tokens.services import TokenContext


class MeView(APIView):
    """Who the credential is: user, tenant, application, token and effective permissions."""

    class OutputSerializer(serializers.Serializer):
        def to_representation(self, context: TokenContext) -> dict:
            token = context.token
            owner = token.owner
            application = token.application
            return {
                "user": {"id": owner.pk, "username": owner.username, "email": owner.email},
                "tenant": {"id": token.tenant.pk, "slug": token.tenant.slug, "name": token.tenant.name},
                "application": (
                    {"id": str(application.pk), "slug": application.slug, "name": application.name}
                    if application
                    else None
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

    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(request.auth).data)
