"""Embedding pages (ToolJet's ``/embed-apps/<appId>``) and the demo application.

The embedding token arrives in the query string (seed 000's contract), so
the first response is a redirect that drops it from the address bar; every
page here sends no Referer, is never cached and never reads or writes the
user's own session with this service. The embed session's secret travels
only in URL fragments (never sent to a server) and in memory.
"""

import uuid
from collections.abc import Callable
from functools import wraps
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET

from core.http import client_ip
from tenants.models import Application, parse_origins
from tokens.embedding import embed_session_open
from tokens.verification import SessionContext, credential_verify

EMBED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-src {frame_src}; frame-ancestors {ancestors}"
)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "'none'"


def _embed_headers(response: HttpResponse, application: Application | None) -> HttpResponse:
    ancestors = " ".join(parse_origins(application.embed_parent_origins)) if application else ""
    frame_src = _origin(application.embed_url) if application and application.embed_url else "'none'"
    response["Content-Security-Policy"] = EMBED_CSP.format(frame_src=frame_src, ancestors=ancestors or "'none'")
    return response


def _no_referrer(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Every answer of these URLs, a 405 included, sends no Referer: the URL
    may carry an embedding token in its query string."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Referrer-Policy"] = "no-referrer"
        return response

    return wrapper


def _application(app_id: str) -> Application | None:
    try:
        return Application.objects.filter(pk=uuid.UUID(app_id)).first()
    except ValueError:  # not a UUID
        return None


def _error(request: HttpRequest, application: Application | None, message: str, status: int) -> HttpResponse:
    response = render(request, "embed/error.html", {"message": message, "application": application}, status=status)
    return _embed_headers(response, application)


@_no_referrer
@never_cache
@xframe_options_exempt
@require_GET
def embed_app_open(request: HttpRequest, app_id: str) -> HttpResponse:
    """Validate the embedding token, open an isolated embed session, and move
    on to the frame page with the session secret in the fragment only."""
    application = _application(app_id)
    plaintext = request.GET.get("personal-access-token", "")
    opened = (
        embed_session_open(plaintext=plaintext, application=application, ip=client_ip(request)) if application else None
    )
    if opened is None:
        return _error(request, application, "This link is invalid or has expired. Reload the page that showed it.", 401)
    response = HttpResponseRedirect(f"/embed-apps/{application.pk}/frame#session={opened.secret}")
    response.status_code = 303
    return _embed_headers(response, application)


@_no_referrer
@never_cache
@xframe_options_exempt
@require_GET
def embed_app_frame(request: HttpRequest, app_id: str) -> HttpResponse:
    """The frame the portal shows: hands the session to the application's embed URL."""
    application = _application(app_id)
    if application is None or not application.embed_url:
        return _error(request, application, "This application cannot be embedded.", 404)
    response = render(request, "embed/frame.html", {"application": application})
    return _embed_headers(response, application)


# ---------------------------------------------------------------- demo application


@_no_referrer
@never_cache
@xframe_options_exempt
@require_GET
def demo_app(request: HttpRequest) -> HttpResponse:
    """A small application to embed: shows who is signed in through the embed session."""
    response = render(request, "embed/demo_app.html")
    # frame-ancestors covers every ancestor: the embed frame (this origin) and
    # the portals that frame it.
    portals = {
        origin
        for origins in Application.objects.exclude(embed_parent_origins="").values_list(
            "embed_parent_origins", flat=True
        )
        for origin in parse_origins(origins)
    }
    response["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
        f"base-uri 'none'; frame-ancestors 'self' {' '.join(sorted(portals))}"
    )
    return response


@never_cache
@require_GET
def demo_app_whoami(request: HttpRequest) -> JsonResponse:
    """The demo application's backend: checks the embed session as an
    application would with /oauth/introspect, and says who it belongs to."""
    scheme, _, secret = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    context = credential_verify(secret, ip=client_ip(request)) if scheme.lower() == "bearer" else None
    if not isinstance(context, SessionContext):  # an embed session, nothing else
        return JsonResponse({"active": False}, status=401)
    session, token = context.session, context.token
    return JsonResponse(
        {
            "active": True,
            "user": {"username": token.owner.username, "email": token.owner.email},
            "tenant": token.tenant.slug,
            "application": {"id": str(token.application_id), "name": token.application.name},
            "permissions": sorted(context.permissions),
            "session_expires_at": session.expires_at.isoformat(),
        }
    )
