from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from tokens.services import TokenContext

ADMIN_PREFIX = "iam."


def effective_permissions(context) -> frozenset[str]:
    """The credential's permissions; this service's own (``iam.*``) count only
    on an administrative token, never on an application's token or a token
    exchanged from one, whatever codes an application's roles carry."""
    if not isinstance(context, TokenContext):
        return frozenset()
    if context.token.application_id is None:
        return context.permissions
    return frozenset(code for code in context.permissions if not code.startswith(ADMIN_PREFIX))


class HasTokenPermissions(BasePermission):
    """Require every code in the view's ``required_permissions`` on the credential.

    A missing one gives 403 naming what is missing.
    """

    def has_permission(self, request: Request, view: APIView) -> bool:
        required = set(getattr(view, "required_permissions", ()))
        context = request.auth
        if not isinstance(context, TokenContext):
            return False  # no bearer token: DRF answers 401 not_authenticated, as for any API
        granted = effective_permissions(context)
        missing = sorted(required - granted)
        if missing:
            error = PermissionDenied(f"The token lacks the permission {', '.join(missing)}.", code="missing_permission")
            error.extra = {"missing_permissions": missing}
            raise error
        return True
