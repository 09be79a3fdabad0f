"""Self-service pages: an end user's own tokens, from the profile menu.

Thin views: parse with a form, call one service or selector, render. Every
query goes through ``request.user``, so another user's token is a 404.
"""

import secrets
from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from core.errors import DomainError
from core.http import client_ip
from core.networks import networks_within
from core.text import counted
from iam.reauth import confirm_password
from tokens.forms import TokenCreateForm, TokenEditForm, TokenRegenerateForm
from tokens.models import PersonalAccessToken
from tokens.rules import EffectiveStatus, TokenState, token_state
from tokens.selectors import (
    TokenRow,
    previous_secret_in_grace,
    revoked_tokens_of,
    rows_split_ended,
    token_get_for_owner,
    token_page_for_owner,
    user_administrators_of,
)
from tokens.services import (
    token_changeable,
    token_create,
    token_creation_limit,
    token_delete,
    token_delete_revoked,
    token_edit,
    token_rotate,
)

# One-time ids of create forms handed out, so a reload or resubmission of a
# create request never creates (or shows) a token twice.
FORM_IDS_SESSION_KEY = "token_create_form_ids"


def _owned_token(request: HttpRequest, token_id: int) -> PersonalAccessToken:
    token = token_get_for_owner(request.user, token_id)
    if token is None:
        raise Http404("No such token.")
    return token


def _token_to_change(request: HttpRequest, token_id: int) -> tuple[PersonalAccessToken, TokenRow, datetime, bool]:
    """One of the user's tokens to edit or regenerate, its state now, and whether
    it can change at all (a revoked or embedding token cannot: its page says why)."""
    token = _owned_token(request, token_id)
    now = timezone.now()
    return token, TokenRow(token, token_state(token, now)), now, token_changeable(token)


def _issue_form_id(request: HttpRequest) -> str:
    form_id = secrets.token_urlsafe(16)
    request.session[FORM_IDS_SESSION_KEY] = [*request.session.get(FORM_IDS_SESSION_KEY, [])[-9:], form_id]
    return form_id


def _consume_form_id(request: HttpRequest, form_id: str) -> None:
    request.session[FORM_IDS_SESSION_KEY] = [
        known for known in request.session.get(FORM_IDS_SESSION_KEY, []) if known != form_id
    ]


@never_cache
@login_required
def token_list(request: HttpRequest) -> HttpResponse:
    page, rows = token_page_for_owner(request.user, request.GET.get("page", 1))
    current, ended = rows_split_ended(rows)
    context = {
        "page": page,
        "rows": rows,
        "current_rows": current,
        "ended_rows": ended,
        "revoked_count": revoked_tokens_of(request.user).count(),
        "now": timezone.now(),
    }
    return render(request, "tokens/list.html", context)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def token_create_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not user.can_create_pats:
        return render(request, "tokens/not_allowed.html", {"admins": user_administrators_of(user)}, status=403)
    now = timezone.now()
    if request.method == "POST":
        form_id = request.POST.get("form_id", "")
        if form_id and form_id not in request.session.get(FORM_IDS_SESSION_KEY, []):
            messages.info(request, "That form was already submitted. A token's secret is shown only once.")
            return redirect("tokens:list")
        form = TokenCreateForm(request.POST, user=user, now=now)
        if not form_id:
            # The page always sends one: this is not a submission of it.
            form.is_valid()
            form.add_error(None, "This form is incomplete. Reload the page and try again.")
        elif form.is_valid():
            if confirmation := confirm_password(request, action="create a token"):
                return confirmation
            try:
                token_creation_limit(f"user:{user.pk}")
                issued = token_create(
                    owner=user,
                    application=form.cleaned_data["application"],
                    name=form.cleaned_data["name"],
                    purpose=form.cleaned_data["purpose"],
                    allowed_networks=form.cleaned_data["allowed_networks"],
                    expires_at=form.cleaned_data["expires_at"],
                    role_codes=[role.code for role in form.cleaned_data["roles"]],
                    ip=client_ip(request),
                    now=now,
                )
            except DomainError as error:
                form.apply_domain_error(error)
            else:
                _consume_form_id(request, form_id)
                # Rendered in the POST response itself: the secret is never
                # put in a URL, a cookie, the session or the browser's storage.
                context = {"token": issued.token, "plaintext": issued.plaintext, "regenerated": False, "previous": None}
                return render(request, "tokens/created.html", context)
    else:
        form = TokenCreateForm(user=user, now=now)
    context = {"form": form, "form_id": _issue_form_id(request)}
    return render(request, "tokens/create.html", context, status=400 if form.errors else 200)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def token_edit_view(request: HttpRequest, token_id: int) -> HttpResponse:
    token, row, now, changeable = _token_to_change(request, token_id)
    if not changeable:
        return render(request, "tokens/edit.html", {"token": token, "form": None, "view_row": row}, status=409)
    if request.method == "POST":
        form = TokenEditForm(request.POST, token=token, now=now)
        if form.is_valid():
            if _widens(token, form.cleaned_data) and (
                confirmation := confirm_password(request, action=f"widen or extend “{token.name}”")
            ):
                return confirmation
            try:
                token = token_edit(
                    token=token,
                    actor=request.user,
                    name=form.cleaned_data["name"],
                    purpose=form.cleaned_data["purpose"],
                    allowed_networks=form.cleaned_data["allowed_networks"],
                    expires_at=form.cleaned_data["expires_at"],
                    role_codes=[role.code for role in form.cleaned_data["roles"]],
                    ip=client_ip(request),
                    now=now,
                )
            except DomainError as error:
                form.apply_domain_error(error)
            else:
                _tell_saved(request, token, token_state(token, now))
                return redirect("tokens:list")
    else:
        form = TokenEditForm(token=token, now=now)
    context = {"token": token, "form": form, "view_row": row, "previous": previous_secret_in_grace(token, now)}
    return render(request, "tokens/edit.html", context, status=400 if form.errors else 200)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def token_regenerate_view(request: HttpRequest, token_id: int) -> HttpResponse:
    """A new secret for one of the user's tokens, shown once as at creation."""
    token, row, now, changeable = _token_to_change(request, token_id)
    if not changeable:
        return render(request, "tokens/regenerate.html", {"token": token, "form": None, "view_row": row}, status=409)
    if request.method == "POST":
        form_id = request.POST.get("form_id", "")
        if form_id not in request.session.get(FORM_IDS_SESSION_KEY, []):
            # A reload or second submission: the secret was shown once already.
            messages.info(request, "That form was already submitted. A token's secret is shown only once.")
            return redirect("tokens:list")
        form = TokenRegenerateForm(request.POST, token=token, now=now)
        if form.is_valid():
            if confirmation := confirm_password(request, action=f"regenerate “{token.name}”"):
                return confirmation
            try:
                token_creation_limit(f"user:{request.user.pk}")
                issued = token_rotate(
                    token=token,
                    actor=request.user,
                    expires_at=form.cleaned_data["expires_at"],
                    grace=form.cleaned_data["grace"],
                    ip=client_ip(request),
                    now=now,
                )
            except DomainError as error:
                form.apply_domain_error(error)
            else:
                _consume_form_id(request, form_id)
                context = {
                    "token": issued.token,
                    "plaintext": issued.plaintext,
                    "previous": previous_secret_in_grace(issued.token, now),
                    "regenerated": True,
                }
                return render(request, "tokens/created.html", context)
    else:
        form = TokenRegenerateForm(token=token, now=now)
    context = {"token": token, "form": form, "view_row": row, "form_id": _issue_form_id(request)}
    return render(request, "tokens/regenerate.html", context, status=400 if form.errors else 200)


def _widens(token: PersonalAccessToken, cleaned: dict) -> bool:
    """Whether an edit gives the token a permission it lacks, a later expiry or
    networks beyond its current ones (sudo mode asks first)."""
    held = set(token.roles.values_list("pk", flat=True))
    networks = cleaned["allowed_networks"]
    wider_networks = bool(token.allowed_networks) and (
        not networks or bool(networks_within(networks, token.allowed_networks))
    )
    return (
        any(role.pk not in held for role in cleaned["roles"])
        or cleaned["expires_at"] > token.expires_at
        or wider_networks
    )


def _tell_saved(request: HttpRequest, token: PersonalAccessToken, state: TokenState) -> None:
    """Say the edit was saved, and, when the token still cannot be used, why and what would help."""
    if state.status == EffectiveStatus.PENDING:
        messages.warning(
            request,
            f"Token “{token.name}” saved. It now awaits a user administrator's approval and does not work until then.",
        )
    elif state.status == EffectiveStatus.INACTIVE:
        messages.warning(
            request,
            f"Token “{token.name}” saved, but it is still inactive: {state.owner_reason_text} "
            + " ".join(state.owner_advice),
        )
    elif state.status == EffectiveStatus.EXPIRED:
        messages.warning(request, f"Token “{token.name}” saved, but it has expired: choose a new expiry date.")
    else:
        messages.success(request, f"Token “{token.name}” saved.")


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def token_delete_view(request: HttpRequest, token_id: int) -> HttpResponse:
    token = _owned_token(request, token_id)
    if request.method == "POST":
        try:
            token_delete(token=token, actor=request.user, ip=client_ip(request))
        except DomainError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, f"Token “{token.name}” deleted.")
        return redirect("tokens:list")
    return render(request, "tokens/delete.html", {"token": token})


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def token_delete_revoked_view(request: HttpRequest) -> HttpResponse:
    """Delete all the user's revoked tokens after a confirmation page (each deletion is audited)."""
    if request.method == "POST":
        deleted = token_delete_revoked(owner=request.user, actor=request.user, ip=client_ip(request))
        if deleted:
            messages.success(request, f"{counted(len(deleted), 'revoked token')} deleted.")
        else:
            messages.info(request, "You have no revoked tokens.")
        return redirect("tokens:list")
    return render(request, "tokens/delete_revoked.html", {"tokens": list(revoked_tokens_of(request.user))})
