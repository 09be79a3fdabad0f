"""The site's URLs plus views that fail on purpose, for tests of error responses
(``@pytest.mark.urls("tests.error_urls")``)."""

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import path

from iam.urls import handler403, handler404, handler500
from iam.urls import urlpatterns as site_urlpatterns
from tests.unreachable_database import cut_database

__all__ = ["handler403", "handler404", "handler500", "urlpatterns"]


def raise_error(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a view that fails")


def refuse(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied


def lose_database_after_view(request: HttpRequest) -> HttpResponse:
    """Succeed, but leave the session to be saved by its middleware after the
    database has gone: the failure happens outside any view."""
    request.session["touched"] = True
    cut_database()
    return HttpResponse("done")


urlpatterns = [
    path("test-errors/boom/", raise_error),
    path("api/v1/test-errors/boom", raise_error),
    path("api/v1/test-errors/forbidden", refuse),
    path("test-errors/forbidden/", refuse),
    path("test-errors/lose-database-after-view/", lose_database_after_view),
    *site_urlpatterns,
]
