from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.views import defaults

from iam.exceptions import json_not_found, json_server_error

API_PREFIXES = ("/api/", "/oauth/", "/.well-known/")


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIXES)


def handler404_view(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """JSON for API paths, the usual page elsewhere."""
    if _is_api(request):
        return json_not_found(request, exception)
    return defaults.page_not_found(request, exception)


def handler500_view(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return json_server_error(request)
    return defaults.server_error(request)


class SignInForm(AuthenticationForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].label = "Username or email"
        self.fields["username"].widget.attrs.update({"autocomplete": "username", "autofocus": True})


class SignInView(auth_views.LoginView):
    """Sign in with a username or email. Django's login() gives the session a
    new key, so a session id planted before sign-in is worthless after it."""

    form_class = SignInForm
    template_name = "registration/login.html"
    redirect_authenticated_user = True
