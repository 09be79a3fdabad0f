"""The self-service pages of issue 20 through Django's test client: the
expiry shown on the create page, all errors at once, the list's "expires
soon" and its bulk deletion of revoked tokens, the error pages and the
console link (tests/browser/test_self_service.py drives them in Chromium)."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from iam.models import AuditAction, AuditEvent
from tokens.models import PersonalAccessToken, TokenStatus
from tokens.services import token_revoke

pytestmark = pytest.mark.django_db


def signed_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def form_id(client: Client) -> str:
    return re.search(r'name="form_id" value="([^"]+)"', client.get("/tokens/new/").content.decode()).group(1)


def day_text(moment) -> str:
    return f"{moment:%-d %b %Y}"


def test_create_page_says_the_day_the_chosen_preset_ends(world):
    client = signed_in(world.user)
    page = client.get("/tokens/new/").content.decode()
    assert f'Expires on <strong><time datetime="{(timezone.now() + timedelta(days=30)).date()}">' in page
    assert day_text(timezone.now() + timedelta(days=30)) in page
    # A refused form keeps the choice and says its day.
    data = {"form_id": form_id(client), "application": str(world.application.pk), "name": "", "expiry_preset": "90"}
    page = client.post("/tokens/new/", data).content.decode()
    assert f'Expires on <strong><time datetime="{(timezone.now() + timedelta(days=90)).date()}">' in page


def test_every_create_error_comes_at_once(world):
    world.issue("Calendar sync")
    client = signed_in(world.user)
    data = {
        "form_id": form_id(client),
        "application": str(world.application.pk),
        "name": "Calendar sync",
        "expiry_preset": "custom",
        "expires_on": "2999-01-01",
    }
    response = client.post("/tokens/new/", data)
    page = response.content.decode()
    assert response.status_code == 400
    assert "You already have a token named “Calendar sync”." in page
    assert "Choose at least one permission." in page and "This field is required." not in page
    assert "Choose a date from" in page
    assert PersonalAccessToken.objects.filter(owner=world.user).count() == 1


def test_the_date_input_allows_what_its_help_text_says(world):
    page = signed_in(world.user).get("/tokens/new/").content.decode()
    first, last = (timezone.now() + timedelta(days=1)).date(), (timezone.now() + timedelta(days=365)).date()
    assert re.search(rf'type="date"[^>]*min="{first}"[^>]*max="{last}"', page)
    assert f"From {day_text(first)} to {day_text(last)}" in page


def test_each_permission_shows_its_description_and_codes(world):
    world.writer.description = "Changes orders."
    world.writer.permissions = ["orders.write", "orders.cancel"]
    world.writer.save()
    page = signed_in(world.user).get("/tokens/new/").content.decode()
    writer = page.split(">Writer</label>", 1)[1].split("</p>", 1)[0]
    assert "Changes orders." in writer
    assert re.findall(r"<code>([^<]+)</code>", writer) == ["orders.cancel", "orders.write"]  # as /api/v1/me sorts


def test_the_edit_form_also_finds_a_name_in_use_with_other_errors(world):
    world.issue("Taken")
    token = world.issue("Mine").token
    response = signed_in(world.user).post(f"/tokens/{token.pk}/edit/", {"name": "Taken", "expires_on": ""})
    page = response.content.decode()
    assert response.status_code == 400 and "You already have a token named “Taken”." in page
    assert "Choose at least one permission." in page


def test_a_fresh_short_token_is_not_flagged_as_expiring_soon(world):
    world.issue("Weekly", days=7)
    page = signed_in(world.user).get("/tokens/").content.decode()
    assert 'class="soon"' not in page


def test_ended_tokens_are_folded_away(world, user_admin):
    world.issue("Live")
    token_revoke(token=world.issue("Gone").token, actor=user_admin)
    page = signed_in(world.user).get("/tokens/").content.decode()
    folded = page.split('<details class="ended-tokens"', 1)[1].split("</details>", 1)[0]
    assert "1 revoked or expired token<" in folded and "Gone" in folded and "Live" not in folded


def test_delete_all_revoked_confirms_then_deletes_each_through_the_service(world, other_world, user_admin):
    live = world.issue("Live").token
    revoked = [world.issue(f"Gone {n}").token for n in range(3)]
    for token in revoked:
        token_revoke(token=token, actor=user_admin)
    someone_elses = other_world.issue("Not yours").token
    token_revoke(token=someone_elses, actor=None)
    client = signed_in(world.user)
    assert "Delete all revoked (3)" in client.get("/tokens/").content.decode()

    confirm = client.get("/tokens/revoked/delete/").content.decode()
    assert "Delete 3 revoked tokens?" in confirm and "Gone 0" in confirm and "Not yours" not in confirm
    assert PersonalAccessToken.objects.filter(status=TokenStatus.DELETED).count() == 0  # GET changes nothing

    response = client.post("/tokens/revoked/delete/")
    assert response.status_code == 302 and response["Location"] == "/tokens/"
    statuses = dict(PersonalAccessToken.objects.values_list("pk", "status"))
    assert {statuses[t.pk] for t in revoked} == {TokenStatus.DELETED}
    assert statuses[live.pk] == TokenStatus.ACTIVE and statuses[someone_elses.pk] == TokenStatus.REVOKED
    deleted = AuditEvent.objects.filter(action=AuditAction.TOKEN_DELETED, actor=world.user)
    assert sorted(deleted.values_list("token_id", flat=True)) == sorted(t.pk for t in revoked)
    assert "3 revoked tokens deleted." in client.get("/tokens/").content.decode()


def test_delete_all_revoked_needs_a_csrf_token(world, user_admin):
    token = world.issue("Gone").token
    token_revoke(token=token, actor=user_admin)
    client = signed_in(world.user, enforce_csrf_checks=True)
    assert client.post("/tokens/revoked/delete/").status_code == 403
    assert PersonalAccessToken.objects.get(pk=token.pk).status == TokenStatus.REVOKED


def test_no_create_entry_for_a_user_without_the_right(world):
    page = signed_in(world.user).get("/tokens/").content.decode()
    assert 'href="/tokens/new/"' in page
    world.user.can_create_pats = False
    world.user.save()
    page = signed_in(world.user).get("/tokens/").content.decode()
    assert 'href="/tokens/new/"' not in page and "Not allowed for you" in page


def test_the_console_link_is_for_administrators_only(world, user_admin, main_admin, app_admin):
    assert 'href="/admin/"' not in signed_in(world.user).get("/tokens/").content.decode()
    for admin in (user_admin, main_admin, app_admin):
        assert ">Console</a>" in signed_in(admin).get("/tokens/").content.decode()


def test_pages_answer_with_styled_404_and_403(world):
    client = signed_in(world.user)
    response = client.get("/tokens/999999/edit/")
    page = response.content.decode()
    assert response.status_code == 404 and "Page not found" in page and 'href="/tokens/"' in page
    assert 'class="topbar"' in page and "/static/css/app.css" in page

    response = client.get("/admin/", follow=True)  # the console refuses an end user with its own PermissionDenied
    page = response.content.decode()
    assert response.status_code == 403 and "You are not allowed to open this page" in page
    assert "The console is for administrators." in page and 'href="/tokens/"' in page


def test_signed_out_visitors_get_the_styled_404_too():
    response = Client().get("/no-such-page/")
    assert response.status_code == 404 and "Page not found" in response.content.decode()
    assert "profile-menu" not in response.content.decode()


@pytest.mark.urls("tests.error_urls")
def test_api_paths_keep_their_json_errors(world):
    for path in ("/api/v1/no-such-thing", "/oauth/no-such-thing"):
        response = Client().get(path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    response = Client().get("/api/v1/test-errors/forbidden")
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    response = Client().get("/test-errors/forbidden/")
    assert response.status_code == 403 and "You are not allowed to open this page" in response.content.decode()


def test_swagger_ui_page_has_no_inline_style(world):
    page = Client().get("/api/docs/").content.decode()
    assert "<style" not in page and "/static/css/swagger.css" in page
    assert "style=" not in page


@pytest.mark.parametrize(
    ("made", "changeable"),
    [("active", True), ("expired", True), ("revoked", False), ("denied", False), ("embedding", False)],
)
def test_the_list_offers_edit_and_regenerate_exactly_when_the_service_allows_them(world, made, changeable):
    """One rule (``tokens.services.token_changeable``) for the list's buttons,
    the edit and regenerate pages and the services themselves."""
    from core.errors import IllegalTransition
    from tokens.models import Approval, TokenKind
    from tokens.services import token_changeable, token_edit

    token = world.issue("subject").token
    rows = PersonalAccessToken.objects.filter(pk=token.pk)
    if made == "expired":
        rows.update(created_at=timezone.now() - timedelta(days=2), expires_at=timezone.now() - timedelta(minutes=1))
    elif made == "revoked":
        token_revoke(token=token, actor=None, actor_label="test")
    elif made == "denied":
        rows.update(approval=Approval.DENIED, approval_note="not needed")
    elif made == "embedding":
        rows.update(kind=TokenKind.EMBED)
    token.refresh_from_db()
    assert token_changeable(token) is changeable
    page = signed_in(world.user).get("/tokens/").content.decode()
    assert (f'href="/tokens/{token.pk}/edit/"' in page) is changeable
    assert (f'href="/tokens/{token.pk}/regenerate/"' in page) is changeable
    if changeable:
        token_edit(token=token, actor=world.user, name="renamed")
    else:
        with pytest.raises(IllegalTransition):
            token_edit(token=token, actor=world.user, name="renamed")
