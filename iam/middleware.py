from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


class RejectNullBytesMiddleware:
    """Refuse a NUL character anywhere in the path, the query string or a form
    body with 400: no database accepts it in text, and nothing legitimate sends it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self._has_null(request):
            body = {"error": {"code": "invalid_request", "message": "The request contains a NUL character."}}
            return JsonResponse(body, status=400)
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
    """Content-Security-Policy (no inline scripts, no framing) and a
    Permissions-Policy on every response that does not set its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
        return response
