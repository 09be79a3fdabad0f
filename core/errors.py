"""Domain errors and the one JSON error shape of the whole API.

Every API error body is::

    {"error": {"code": "machine_readable", "message": "For people.", "fields": {"name": ["..."]}}}

``fields`` is present only for validation errors.
"""

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response


class DomainError(Exception):
    """A rule refused an operation. Subclasses set the HTTP status and code."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, fields: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields = fields or {}


class ValidationFailed(DomainError):
    code = "validation_failed"

    def __init__(self, fields: dict[str, list[str]], message: str = "Some fields are invalid."):
        super().__init__(message, fields=fields)


class NameTaken(ValidationFailed):
    """The only problem is a name already in use: a conflict with what exists (409), not bad input."""

    status_code = status.HTTP_409_CONFLICT
    code = "name_taken"


class NotPermitted(DomainError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "forbidden"


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class IllegalTransition(DomainError):
    """The object's current state does not allow the requested change."""

    status_code = status.HTTP_409_CONFLICT
    code = "illegal_transition"


class RateLimited(DomainError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class RequestTooLarge(drf_exceptions.APIException):
    """The body is over DATA_UPLOAD_MAX_MEMORY_SIZE (Django refuses to read it)."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"

    def __init__(self):
        super().__init__(f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.")


class InvalidToken(drf_exceptions.AuthenticationFailed):
    """One error for every bad bearer credential, whatever the reason."""

    default_detail = "The access token is invalid, expired or revoked."
    default_code = "invalid_token"


INVALID_TOKEN_CHALLENGE = 'Bearer realm="iam", error="invalid_token"'


def error_body(code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def _flatten_detail(detail: Any) -> Any:
    """Turn DRF's nested ErrorDetail structure into plain strings and lists."""
    if isinstance(detail, dict):
        return {key: _flatten_detail(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten_detail(item) for item in detail]
    return str(detail)


def _field_messages(detail: Any, path: str = "") -> dict[str, list[str]]:
    """DRF's validation errors as ``{"field": [messages]}``, one level deep:
    an item of a list field is named by its index (``"roles.0"``)."""
    if isinstance(detail, dict):
        items = detail.items()
    elif isinstance(detail, list) and any(isinstance(item, dict | list) for item in detail):
        items = enumerate(detail)  # per-item errors of a list of objects
    else:
        messages = detail if isinstance(detail, list) else [detail]
        return {path or "non_field_errors": [str(message) for message in messages]}
    fields: dict[str, list[str]] = {}
    for key, value in items:
        if value:
            fields.update(_field_messages(value, f"{path}.{key}" if path else str(key)))
    return fields


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler: domain and framework errors in one shape."""
    # Imported here: rest_framework.views imports the authentication classes,
    # which import this module.
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, DomainError):
        response = Response(error_body(exc.code, exc.message, exc.fields), status=exc.status_code)
        if isinstance(exc, RateLimited):
            response["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge()
    elif isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None

    if isinstance(exc, drf_exceptions.ValidationError):
        response.data = error_body("validation_failed", "Some fields are invalid.", _field_messages(exc.detail))
    else:
        detail = exc.detail if isinstance(exc, drf_exceptions.APIException) else str(exc)
        codes = exc.get_codes() if isinstance(exc, drf_exceptions.APIException) else "error"
        code = codes if isinstance(codes, str) else "error"
        message = detail if isinstance(detail, str) else str(_flatten_detail(detail))
        response.data = error_body(code, str(message))
        extra = getattr(exc, "extra", None)
        if extra:
            response.data["error"].update(extra)
    if isinstance(exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed):
        response.status_code = status.HTTP_401_UNAUTHORIZED
        # The view's own scheme (RFC 9110 §11.6.1): a Basic-only API challenges Basic, or
        # challenge-driven clients (urllib's HTTPBasicAuthHandler, Java, .NET) never send it.
        challenge = str(getattr(exc, "auth_header", "") or "")
        if not challenge.startswith("Basic"):
            challenge = INVALID_TOKEN_CHALLENGE if isinstance(exc, InvalidToken) else 'Bearer realm="iam"'
        response["WWW-Authenticate"] = challenge
    return response


# Exempt: CSRF would otherwise answer an unknown API path's POST with its HTML 403 page.
@csrf_exempt
def json_not_found(request, exception=None) -> JsonResponse:
    return JsonResponse(error_body("not_found", "Not found."), status=404)


def json_server_error(request) -> JsonResponse:
    return JsonResponse(error_body("server_error", "The server could not complete the request."), status=500)
