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
    # No menu entry or button that leads to a refusal: the menu says why instead.
    page.locator(".profile-menu summary").click()
    menu = page.locator(".profile-menu nav")
    assert menu.get_by_role("link", name="Create personal access token").count() == 0
    expect(menu.get_by_text("Not allowed for you")).to_be_visible()
    assert page.get_by_role("link", name="Create token").count() == 0
    expect(page.locator("#no-create-reason")).to_be_visible()
    # The address typed in still explains, and says whom to ask.
    page.goto("/tokens/new/")
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


def day_text(moment) -> str:
    return f"{moment:%-d %b %Y}"


def test_create_page_says_the_expiry_date_shows_every_error_at_once_and_focuses_the_first(page, live_server, world):
    world.reader.description = "Reads the orders."
    world.reader.save()
    world.issue("Calendar sync")
    sign_in(page, world.user.username, PASSWORD)
    page.goto("/tokens/new/")
    now = timezone.now()

    # The chosen preset's date is on the page at once (rendered by the server for
    # the initial 30 days), and follows the choice.
    result = page.locator("#expiry-result")
    expect(result).to_have_text(f"Expires on {day_text(now + timedelta(days=30))}")
    page.get_by_label("90 days").check()
    expect(result).to_have_text(f"Expires on {day_text(now + timedelta(days=90))}")
    chosen = (now + timedelta(days=12)).date()
    page.get_by_label("Expiry date").fill(chosen.isoformat())
    expect(page.get_by_role("radio", name="Choose a date")).to_be_checked()
    expect(result).to_have_text(f"Expires on {day_text(chosen)}")

    # The date input allows exactly the range its help text gives.
    date_input = page.get_by_label("Expiry date")
    assert date_input.get_attribute("type") == "date"
    first, last = (now + timedelta(days=1)).date(), (now + timedelta(days=world.tenant.max_token_lifetime_days)).date()
    assert (date_input.get_attribute("min"), date_input.get_attribute("max")) == (first.isoformat(), last.isoformat())
    expect(page.locator("#id_expires_on_helptext")).to_contain_text(f"From {day_text(first)} to {day_text(last)}")

    # Each permission shows its name, its description and the codes /api/v1/me gives a token with it.
    reader = page.locator(".role-choice", has=page.get_by_label("Reader", exact=True))
    expect(reader).to_contain_text("Reads the orders.")
    codes = reader.locator(".role-codes code").all_inner_texts()
    assert codes == call_me(live_server.url, world.issue("probe", roles=("reader",)).plaintext)[1]["permissions"]

    # A name in use and no permission: both errors at once; focus on the first.
    page.get_by_label("Name").fill("Calendar sync")
    page.get_by_label("30 days").check()
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_text("You already have a token named “Calendar sync”.")).to_be_visible()
    expect(page.get_by_text("Choose at least one permission.")).to_be_visible()
    assert page.get_by_text("This field is required.").count() == 0
    assert page.evaluate("() => document.activeElement.id") == "id_name"
    expect(result).to_have_text(f"Expires on {day_text(timezone.now() + timedelta(days=30))}")  # the choice kept
    screenshot(page, "create-errors")
    assert not PersonalAccessToken.objects.filter(owner=world.user, name="Calendar sync").exclude(pk=None).count() > 1


def test_a_failed_permission_choice_moves_focus_to_the_permissions(page, world):
    sign_in(page, world.user.username, PASSWORD)
    page.goto("/tokens/new/")
    page.get_by_label("Name").fill("No permission")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_text("Choose at least one permission.")).to_be_visible()
    assert page.evaluate("() => document.activeElement.name") == "roles"


def test_a_switched_off_application_is_explained_on_the_create_page(page, world):
    from tests.factories import RoleFactory, TenantApplicationFactory, grant

    closed = TenantApplicationFactory(tenant=world.tenant, allows_pats=False, application__name="Ledger").application
    grant(world.user, RoleFactory(application=closed, code="clerk", name="Clerk"))
    sign_in(page, world.user.username, PASSWORD)
    page.goto("/tokens/new/")
    expect(page.locator("#switched-off")).to_contain_text("switched off in your tenant for Ledger")
    assert "Ledger" not in page.get_by_label("Application").inner_text()


def test_ended_tokens_fold_away_and_all_revoked_ones_are_deleted_at_once(page, world, user_admin):
    from iam.models import AuditAction, AuditEvent
    from tokens.services import token_revoke

    world.issue("Live one")
    revoked = [world.issue(f"Revoked {n}").token for n in (1, 2)]
    for token in revoked:
        token_revoke(token=token, actor=user_admin)
    expired = world.issue("Old one").token
    PersonalAccessToken.objects.filter(pk=expired.pk).update(
        created_at=timezone.now() - timedelta(days=40), expires_at=timezone.now() - timedelta(days=10)
    )
    sign_in(page, world.user.username, PASSWORD)
    folded = page.locator("details.ended-tokens")
    expect(folded.locator("summary")).to_have_text("3 revoked or expired tokens")
    expect(page.locator(f'[data-token-id="{revoked[0].pk}"]')).to_be_hidden()
    expect(page.get_by_role("heading", name="Live one")).to_be_visible()
    folded.locator("summary").click()
    expect(page.locator(f'[data-token-id="{expired.pk}"]')).to_be_visible()

    page.get_by_role("link", name="Delete all revoked (2)").click()
    expect(page.get_by_text("This cannot be undone.")).to_be_visible()
    page.get_by_role("button", name="Delete 2 revoked tokens").click()
    page.wait_for_url("**/tokens/")
    expect(page.get_by_text("2 revoked tokens deleted.")).to_be_visible()
    expect(page.locator("details.ended-tokens summary")).to_have_text("1 revoked or expired token")
    assert page.get_by_role("link", name=re.compile("Delete all revoked")).count() == 0
    assert {t.status for t in PersonalAccessToken.objects.filter(pk__in=[t.pk for t in revoked])} == {
        TokenStatus.DELETED
    }
    # Each one went through the delete service, so each is in the audit trail.
    deleted = AuditEvent.objects.filter(action=AuditAction.TOKEN_DELETED)
    assert sorted(deleted.values_list("token_id", flat=True)) == sorted(t.pk for t in revoked)
    assert PersonalAccessToken.objects.get(pk=expired.pk).status == TokenStatus.ACTIVE


def test_nine_tokens_fit_a_phone_in_a_few_screens(browser, live_server, world):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    try:
        for n in range(9):
            world.issue(f"Integration {n + 1}", purpose="Nightly export to the data warehouse" if n % 2 else None)
        sign_in(page, world.user.username, PASSWORD)
        assert page.locator("li.token").count() == 9
        height = page.evaluate("() => document.documentElement.scrollHeight")
        screenshot(page, "list-phone-nine")
        assert height < 2600, f"9 tokens take {height}px on a phone"
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
    finally:
        context.close()


def test_error_pages_are_styled_and_lead_back(page, live_server, world):
    sign_in(page, world.user.username, PASSWORD)
    response = page.goto("/tokens/999999/edit/")
    assert response.status == 404
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    expect(page.locator(".topbar .brand")).to_be_visible()  # the site's own frame
    screenshot(page, "404")
    page.get_by_role("link", name="Back to my tokens").click()
    page.wait_for_url("**/tokens/")

    response = page.goto("/admin/")  # an end user is no administrator
    assert response.status == 403
    expect(page.get_by_role("heading", name="You are not allowed to open this page")).to_be_visible()
    expect(page.get_by_role("link", name="Back to my tokens")).to_be_visible()
    screenshot(page, "403")

    # API paths keep their JSON errors.
    for path, status in (("/api/v1/no-such-thing", 404), ("/api/v1/admin/health", 401)):
        api = page.request.get(path)
        assert api.status == status and api.headers["content-type"].startswith("application/json")


def test_only_administrators_see_the_console_in_the_profile_menu(page, world, user_admin):
    sign_in(page, world.user.username, PASSWORD)
    page.locator(".profile-menu summary").click()
    expect(page.get_by_role("link", name="Personal access tokens")).to_be_visible()
    assert page.get_by_role("link", name="Console").count() == 0
    page.locator(".profile-menu button", has_text="Sign out").click()

    sign_in(page, user_admin.username, PASSWORD)
    page.locator(".profile-menu summary").click()
    page.get_by_role("link", name="Console", exact=True).click()
    page.wait_for_url("**/admin/")
    assert page.locator("#content").count() == 1  # the console itself, not a refusal


CSP_WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


def test_api_docs_run_under_the_content_security_policy(page):
    problems = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.add_init_script(CSP_WATCH)
    response = page.goto("/api/docs/")
    assert "style-src 'self'" in response.headers["content-security-policy"]
    page.locator(".opblock").first.wait_for()
    page.locator(".opblock-summary").first.click()  # an operation opens too
    page.locator(".opblock-body").first.wait_for()
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.__csp") == []
    assert problems == []
    # The page's own styles still apply (from static/css/swagger.css).
    assert page.evaluate("() => getComputedStyle(document.body).backgroundColor") == "rgb(250, 250, 250)"
