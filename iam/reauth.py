"""Sudo mode (GitHub's): a sensitive change in the browser asks for the
password again once the session's sign-in is older than
``REAUTHENTICATION_SECONDS``.

The page that asks carries the original form's fields, so confirming
completes the request that asked without retyping it. A confirmation is a
sign-in attempt: it counts toward the same limits (``iam.signin``).
"""

import time

from django.conf import settings
from django.contrib.auth import authenticate, user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from core.http import client_ip
from iam.signin import sign_in_attempt_count, sign_in_attempt_succeeded, wait_text

AUTHENTICATED_AT_SESSION_KEY = "authenticated_at"
PASSWORD_FIELD = "reauth_password"
# Fields of the original request the confirmation page does not carry again.
_NOT_CARRIED = {"csrfmiddlewaretoken", PASSWORD_FIELD}


@receiver(user_logged_in, dispatch_uid="iam.reauth.note_sign_in")
def note_sign_in(sender, request: HttpRequest | None, user, **kwargs) -> None:
    if request is not None and hasattr(request, "session"):
        request.session[AUTHENTICATED_AT_SESSION_KEY] = int(time.time())


def recently_authenticated(request: HttpRequest) -> bool:
    """Whether the session's user typed their password within the last
    ``REAUTHENTICATION_SECONDS`` (a session from before sudo mode never did)."""
    authenticated_at = request.session.get(AUTHENTICATED_AT_SESSION_KEY)
    if not isinstance(authenticated_at, int):
        return False
    return 0 <= time.time() - authenticated_at < settings.REAUTHENTICATION_SECONDS


def confirm_password(request: HttpRequest, *, action: str) -> HttpResponse | None:
    """None when the request may go on; otherwise the page that asks for the
    password (200), says it was wrong (400) or that there were too many
    attempts (429). ``action`` completes "Confirm your password to …"."""
    if recently_authenticated(request):
        return None
    user = request.user
    error, status = "", 200
    if PASSWORD_FIELD in request.POST:
        attempt = sign_in_attempt_count(ip=client_ip(request), username=user.get_username())
        if not attempt.allowed:
            error, status = f"Too many attempts. Try again in {wait_text(attempt.retry_after)}.", 429
        elif _password_is_right(request, user):
            sign_in_attempt_succeeded(attempt)
            request.session[AUTHENTICATED_AT_SESSION_KEY] = int(time.time())
            return None
        else:
            error, status = "That is not your password.", 400
    carried = [(name, value) for name, values in request.POST.lists() if name not in _NOT_CARRIED for value in values]
    context = {"action": action, "carried": carried, "error": error, "password_field": PASSWORD_FIELD}
    response = render(request, "registration/confirm_password.html", context, status=status)
    if status == 429:
        response["Retry-After"] = str(attempt.retry_after)
    return response


def _password_is_right(request: HttpRequest, user) -> bool:
    confirmed = authenticate(request, username=user.get_username(), password=request.POST.get(PASSWORD_FIELD, ""))
    return confirmed is not None and confirmed.pk == user.pk
