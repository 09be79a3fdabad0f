import sys

from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from core.errors import error_body, json_not_found, json_server_error
from core.http import client_ip, is_api_request
from core.middleware import DATABASE_UNAVAILABLE_ERRORS, database_unavailable_response
from iam.signin import SignInAttempt, sign_in_attempt_count, sign_in_attempt_succeeded, wait_text


def handler404_view(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """JSON for API paths, the usual page elsewhere."""
    if is_api_request(request):
        return json_not_found(request, exception)
    return defaults.page_not_found(request, exception)


def handler403_view(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """JSON for API paths, the styled page (templates/403.html) elsewhere, the console's included."""
    if is_api_request(request):
        return JsonResponse(error_body("forbidden", "You do not have permission to do this."), status=403)
    return defaults.permission_denied(request, exception)


def handler500_view(request: HttpRequest) -> HttpResponse:
    # A database that fails outside a view (a middleware saving the session)
    # never reaches DatabaseUnavailableMiddleware.process_exception: still a 503.
    error = sys.exception()
    if isinstance(error, DATABASE_UNAVAILABLE_ERRORS):
        return database_unavailable_response(request, error)
    if is_api_request(request):
        return json_server_error(request)
    return defaults.server_error(request)


class SignInForm(AuthenticationForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].label = "Username or email"
        self.fields["username"].widget.attrs.update({"autocomplete": "username", "autofocus": True})


class SignInView(auth_views.LoginView):
    """Sign in with a username or email. Django's login() gives the session a
    new key, so a session id planted before sign-in is worthless after it.
    Failed attempts are limited per address and per username (iam.signin)."""

    form_class = SignInForm
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        self.attempt = sign_in_attempt_count(ip=client_ip(request), username=request.POST.get("username", ""))
        if not self.attempt.allowed:
            return self.too_many_attempts(self.attempt)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form: SignInForm) -> HttpResponse:
        sign_in_attempt_succeeded(self.attempt)
        return super().form_valid(form)

    def too_many_attempts(self, attempt: SignInAttempt) -> HttpResponse:
        """429 without checking the password, so guessing learns nothing until the window ends."""
        form = SignInForm(self.request, initial={"username": self.request.POST.get("username", "")})
        refusal = f"Too many sign-in attempts. Try again in {wait_text(attempt.retry_after)}."
        response = self.render_to_response(self.get_context_data(form=form, refusal=refusal), status=429)
        response["Retry-After"] = str(attempt.retry_after)
        return response
