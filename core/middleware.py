import logging
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

from core.errors import error_body
from core.http import is_api_request

logger = logging.getLogger(__name__)


class RejectNullBytesMiddleware:
    """Refuse a NUL character anywhere in the path, the query string or a form
    body with 400: no database accepts it in text, and nothing legitimate sends it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self._has_null(request):
            message = "The request contains a NUL character."
            if request.path.startswith("/oauth/"):  # RFC 6749 §5.2's shape there, as the views answer
                body = {"error": "invalid_request", "error_description": message}
                return JsonResponse(body, status=400, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
            return JsonResponse({"error": {"code": "invalid_request", "message": message}}, status=400)
        return self.get_response(request)

    @staticmethod
    def _has_null(request: HttpRequest) -> bool:
        if "\x00" in request.path or "%00" in request.META.get("QUERY_STRING", ""):
            return True
        if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
            try:
                return any("\x00" in key or "\x00" in value for key, values in request.POST.lists() for value in values)
            except Exception:  # noqa: BLE001 - an unparsable body is the view's to refuse
                return False
        return False


class SecurityHeadersMiddleware:
    """Content-Security-Policy (no inline scripts, no framing), a
    Permissions-Policy and ``Cache-Control: no-store`` on every response that
    does not set its own.

    no-store is the default because nearly every answer here carries a secret
    or a user's token data (API bodies, one-time pages, errors naming tokens);
    what may be cached says so itself (static files, the JWKS).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
        response.headers.setdefault("Cache-Control", "no-store")
        return response


# A database that cannot be reached (down, refusing connections, its file
# gone) or that gives up on a query (timeout, lock) is a passing condition.
# SQLite also reports a missing table this way: the log line names the cause.
DATABASE_UNAVAILABLE_ERRORS = (OperationalError, InterfaceError)
DATABASE_RETRY_AFTER_SECONDS = 30
UNAVAILABLE_PAGE = (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Service unavailable · IAM</title></head>'
    "<body><h1>Service temporarily unavailable</h1><p>Please try again in a minute.</p></body></html>"
)


def database_unavailable_response(request: HttpRequest, error: BaseException) -> HttpResponse:
    """503 with Retry-After: the API's JSON error on API paths, a short page
    elsewhere. Built without templates or the session: both may need the
    database that just failed."""
    logger.error("Database unavailable (%s: %s): answered 503", type(error).__name__, error)
    if is_api_request(request):
        body = error_body("service_unavailable", "The service is temporarily unavailable. Try again shortly.")
        response = JsonResponse(body, status=503)
    else:
        response = HttpResponse(UNAVAILABLE_PAGE, status=503)
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    """Turn a database outage in a view into 503 with Retry-After, never 500.
    (Outside a view, e.g. a middleware saving the session, handler500 does the same.)"""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, DATABASE_UNAVAILABLE_ERRORS):
            return database_unavailable_response(request, exception)
        return None
