from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from tokens.services import TokenContext


class HasTokenPermissions(BasePermission):
    """Require every code in the view's ``required_permissions`` on the credential.

    A missing one gives 403 naming what is missing.
    """

    def has_permission(self, request: Request, view: APIView) -> bool:
        required = set(getattr(view, "required_permissions", ()))
        context = request.auth
        granted = context.permissions if isinstance(context, TokenContext) else frozenset()
        missing = sorted(required - granted)
        if missing:
            error = PermissionDenied(f"The token lacks the permission {', '.join(missing)}.", code="missing_permission")
            error.extra = {"missing_permissions": missing}
            raise error
        return True
