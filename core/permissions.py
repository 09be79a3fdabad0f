from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView


def effective_permissions(context) -> frozenset[str]:
    """The permissions of the request's credential (``request.auth``): those
    its context says count, none for anything else (a session, no credential)."""
    return getattr(context, "effective_permissions", frozenset())


class HasTokenPermissions(BasePermission):
    """Require every code in the view's ``required_permissions`` on the credential.

    A missing one gives 403 naming what is missing.
    """

    def has_permission(self, request: Request, view: APIView) -> bool:
        required = set(getattr(view, "required_permissions", ()))
        if not hasattr(request.auth, "effective_permissions"):
            return False  # no bearer token: DRF answers 401 not_authenticated, as for any API
        missing = sorted(required - effective_permissions(request.auth))
        if missing:
            raise missing_permission_refusal(missing)
        return True


def missing_permission_refusal(missing: list[str], needed_by: str = "") -> PermissionDenied:
    """The 403 naming what the token lacks (``missing_permissions`` in the body), on the API and the gateway."""
    what = f" that {needed_by} needs" if needed_by else ""
    error = PermissionDenied(f"The token lacks the permission {', '.join(missing)}{what}.", code="missing_permission")
    error.extra = {"missing_permissions": list(missing)}
    return error
