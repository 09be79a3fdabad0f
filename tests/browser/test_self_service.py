"""End users manage their own tokens in a real browser (Chromium via Playwright)."""

import json
import re
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from iam.services import role_grant_remove
from tests.browser.conftest import screenshot, sign_in
from tests.factories import PASSWORD
from tokens.models import PersonalAccessToken, TokenStatus

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN_RE = re.compile(r"pat_[0-9A-Za-z]{36}")


def call_me(base_url: str, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(f"{base_url}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def open_profile_menu_item(page, name: str) -> None:
    page.locator(".profile-menu summary").click()
    page.get_by_role("link", name=name, exact=True).click()


def test_create_use_reload_edit_and_delete(page, live_server, world):
    sign_in(page, world.user.username, PASSWORD)
    open_profile_menu_item(page, "Create personal access token")
    page.wait_for_url("**/tokens/new/")
    page.get_by_label("Application").select_option(label=world.application.name)
    page.get_by_label("Name").fill("Calendar sync")
    page.get_by_label("90 days").check()
    page.get_by_label("Reader", exact=True).check()
    screenshot(page, "create")
    page.get_by_role("button", name="Create token").click()

    secret_box = page.locator("#token-secret")
    secret = secret_box.input_value()
    assert TOKEN_RE.fullmatch(secret)
    expect(page.get_by_text("It will not be shown again")).to_be_visible()
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    assert secret not in page.url
    # The picture for the README shows a redacted value, never a real token.
    secret_box.evaluate("box => { box.value = 'pat_' + '•'.repeat(36); }")
    screenshot(page, "one-time")

    status, me = call_me(live_server.url, secret)
    assert status == 200
    assert me["user"]["username"] == world.user.username and me["application"]["slug"] == world.application.slug
    assert me["permissions"] == ["orders.read"] and me["token"]["name"] == "Calendar sync"

    # The secret is nowhere the browser keeps things.
    stored = page.evaluate("() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie")
    assert secret not in stored
    assert all(secret not in cookie["value"] for cookie in page.context.cookies())

    # Reloading (which resubmits the form) and going back never show it again.
    page.reload()
    assert secret not in page.content() and page.locator("#token-secret").count() == 0
    page.go_back()
    assert secret not in page.content()
    page.goto("/tokens/")
    assert secret not in page.content()
    assert PersonalAccessToken.objects.filter(owner=world.user).count() == 1

    token = PersonalAccessToken.objects.get(owner=world.user)
    card = page.locator(f'[data-token-id="{token.pk}"]')
    expect(card.get_by_text("Active", exact=True)).to_be_visible()
    assert card.get_by_text("from 127.0.0.1").is_visible()  # last used by the API call above
    screenshot(page, "list")

    # Edit the expiry.
    card.get_by_role("link", name=re.compile("^Edit")).click()
    new_day = (timezone.now() + timedelta(days=200)).date()
    page.get_by_label("Expiry date").fill(new_day.isoformat())
    screenshot(page, "edit")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**/tokens/")
    expect(page.get_by_text("Token “Calendar sync” saved.")).to_be_visible()
    token.refresh_from_db()
    assert token.expires_at.date() == new_day

    # Delete it: the confirmation says it cannot be undone.
    page.locator(f'[data-token-id="{token.pk}"]').get_by_role("link", name=re.compile("^Delete")).click()
    expect(page.get_by_text("This cannot be undone.")).to_be_visible()
    page.get_by_role("button", name="Delete token").click()
    page.wait_for_url("**/tokens/")
    assert page.locator(f'[data-token-id="{token.pk}"]').count() == 0
    token.refresh_from_db()
    assert token.status == TokenStatus.DELETED
    assert call_me(live_server.url, secret)[0] == 401


def test_role_removed_by_an_administrator_makes_the_token_inactive_until_edited(page, live_server, world, user_admin):
    issued = world.issue("Order export", roles=("reader", "writer"))
    role_grant_remove(user=world.user, role=world.writer, actor=user_admin)
    assert call_me(live_server.url, issued.plaintext)[0] == 401

    sign_in(page, world.user.username, PASSWORD)
    card = page.locator(f'[data-token-id="{issued.token.pk}"]')
    expect(card.get_by_text("Inactive", exact=True)).to_be_visible()
    expect(card.get_by_text("You no longer hold the role “Writer”.")).to_be_visible()
    screenshot(page, "list-inactive")

    card.get_by_role("link", name=re.compile("^Edit")).click()
    assert page.get_by_label("Reader", exact=True).is_checked()
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**/tokens/")
    expect(page.locator(f'[data-token-id="{issued.token.pk}"]').get_by_text("Active", exact=True)).to_be_visible()
    status, me = call_me(live_server.url, issued.plaintext)
    assert status == 200 and me["permissions"] == ["orders.read"]


def test_user_without_the_right_sees_why_instead_of_a_form(page, world, user_admin):
    world.user.can_create_pats = False
    world.user.save()
    sign_in(page, world.user.username, PASSWORD)
    open_profile_menu_item(page, "Create personal access token")
    expect(page.get_by_text("You are not allowed to create personal access tokens")).to_be_visible()
    expect(page.get_by_role("link", name=user_admin.email)).to_be_visible()
    assert page.locator("form#token-create-form").count() == 0


def focus(page, predicate_js: str, limit: int = 40) -> None:
    """Press Tab until the focused element satisfies ``predicate_js`` (keyboard only)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"() => {{ const el = document.activeElement; return !!({predicate_js}); }}"):
            return
    raise AssertionError(f"never reached {predicate_js} with Tab")


def test_keyboard_only_creation(page, live_server, world):
    sign_in(page, world.user.username, PASSWORD)
    page.goto("/tokens/new/")
    focus(page, "el.id === 'id_application'")
    page.keyboard.press("ArrowDown")  # one application: stays selected
    focus(page, "el.id === 'id_name'")
    page.keyboard.type("Keyboard token")
    focus(page, "el.name === 'expiry_preset'")
    page.keyboard.press("ArrowRight")  # from 30 days to 90 days
    focus(page, "el.name === 'roles' && el.labels[0].textContent.trim().startsWith('Writer')")
    page.keyboard.press("Space")
    focus(page, "el.type === 'submit' && el.textContent.includes('Create token')")
    page.keyboard.press("Enter")
    secret = page.locator("#token-secret").input_value()
    token = PersonalAccessToken.objects.get(owner=world.user, name="Keyboard token")
    assert list(token.roles.values_list("code", flat=True)) == ["writer"]
    assert timedelta(days=89) < token.expires_at - timezone.now() <= timedelta(days=90)
    assert call_me(live_server.url, secret)[1]["permissions"] == ["orders.write"]


def test_pages_are_labelled_and_fit_a_phone(browser, live_server, world):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 375, "height": 740}, is_mobile=True)
    page = context.new_page()
    try:
        world.issue("Phone token")
        sign_in(page, world.user.username, PASSWORD)
        for path in ("/tokens/", "/tokens/new/"):
            page.goto(path)
            unlabelled = page.evaluate(
                """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                     .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
                     .map(el => el.name)"""
            )
            assert unlabelled == []
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} scrolls sideways by {overflow}px"
        page.goto("/tokens/")
        screenshot(page, "list-phone")
    finally:
        context.close()
