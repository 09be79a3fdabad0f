"""Each persona walks their pages at the sizes people use, in a real browser:
an administrator's 1280x800 screen and a 390x844 phone.

On every page: nothing scrolls sideways, each list shows its key columns
inside its box (by element geometry, not by the markup), the page's main
buttons are in view, and no link on it leads to a page the viewer cannot open.
The screenshots (test-artifacts/screenshots/persona-*.png) are the README's.
"""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from iam.services import role_set_pat_eligible
from tests.browser.conftest import screenshot
from tests.factories import PASSWORD
from tokens.models import PersonalAccessToken
from tokens.services import token_revoke

pytestmark = pytest.mark.django_db(transaction=True)

DESKTOP, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}

# The columns a list must show without scrolling sideways, per screen.
KEY_COLUMNS = {
    "tokens": {
        "desktop": [
            "token_name",
            "owner|owner_and_tenant",
            "application_and_permissions",
            "status_badge",
            "expires",
            "last_used",
        ],
        "phone": ["token_name", "owner|owner_and_tenant", "status_badge", "expires"],
    },
    "audit": {
        "desktop": [
            "occurred",
            "actor_and_address|actor_tenant_and_address",
            "action",
            "token_link",
            "reason",
            "change_summary",
        ],
        "phone": ["occurred", "actor_and_address|actor_tenant_and_address", "action", "token_link"],
    },
    "users": {
        "desktop": ["username_and_email", "can_create_pats", "is_active", "administrator"],
        "phone": ["username_and_email", "can_create_pats", "is_active"],
    },
}

GEOMETRY = """(columns) => {
  const width = document.documentElement.clientWidth;
  const found = {sideways: document.documentElement.scrollWidth - width, hidden: []};
  const box = document.querySelector('#changelist .results');
  if (!box) return found;
  found.boxSideways = box.scrollWidth - box.clientWidth;
  const right = Math.min(width, box.getBoundingClientRect().right);
  for (const column of columns) {
    // "a|b": whichever of the two the viewer's list has (a main administrator's adds the tenant).
    const cell = column.split('|').map(c => document.querySelector(`#result_list th.column-${c}`)).find(c => c);
    const r = cell && cell.getBoundingClientRect();
    if (!r || r.width === 0 || r.left < 0 || r.right > right + 1) found.hidden.push(column);
  }
  return found;
}"""

# Every link of the page's content, breadcrumbs and menu, made absolute (Django writes some relative,
# "../password/"), on this site, except signing out.
LINKS = """() => [...new Set([...document.querySelectorAll('#content a, .breadcrumbs a, #nav-sidebar a')]
  .filter(a => a.hasAttribute('href') && a.origin === location.origin && !a.pathname.includes('logout'))
  .map(a => a.pathname + a.search))]"""


@pytest.fixture
def scene(world, main_admin):
    """Tokens in each state a console shows, with the why of each."""
    for i in range(4):
        world.issue(f"Nightly CRM sync {i}", roles=("reader",), purpose="Calendar and CRM sync for the sales team")
    token_revoke(
        token=world.issue("Leaked deploy key", roles=("reader",)).token,
        actor=main_admin,
        reason="Pasted into a public CI log",
    )
    expired = world.issue("Old report export", roles=("reader",)).token
    past = timezone.now() - timedelta(days=2)
    PersonalAccessToken.objects.filter(pk=expired.pk).update(created_at=past - timedelta(days=30), expires_at=past)
    world.issue("Writer bot", roles=("writer",))
    role_set_pat_eligible(role=world.writer, eligible=False, actor=main_admin)  # Writer bot becomes inactive
    return world


def open_as(browser, live_server, user, viewport):
    context = browser.new_context(base_url=live_server.url, viewport=viewport)
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.get_by_label("Username or email").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/tokens/")
    return context, page


def check_page(page, live_server, name: str, screen: str, *, columns: str | None = None, buttons=()) -> None:
    """The page's screenshot, then its geometry and links."""
    screenshot(page, f"persona-{name}-{screen}")
    found = page.evaluate(GEOMETRY, KEY_COLUMNS[columns][screen] if columns else [])
    assert found["sideways"] <= 0, f"{name} at {screen} scrolls sideways by {found['sideways']} px"
    assert not found["hidden"], f"{name} at {screen}: key columns out of sight: {found['hidden']}"
    if columns:
        assert found["boxSideways"] <= 0, f"{name} at {screen}: its table scrolls by {found['boxSideways']} px"
    width = page.viewport_size["width"]
    for button in buttons:
        expect(button).to_be_visible()
        box = button.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, f"{name} at {screen}: {button} is out of sight"
    for href in page.evaluate(LINKS):
        status = page.request.get(live_server.url + href, max_redirects=0).status
        assert status < 400, f"{name} at {screen}: the link {href} answers {status}"


@pytest.mark.parametrize("screen", ["desktop", "phone"])
def test_user_administrator_walks_tokens_audit_trail_and_users(
    browser, live_server, scene, user_admin, main_admin, screen
):
    context, page = open_as(browser, live_server, user_admin, DESKTOP if screen == "desktop" else PHONE)
    page.goto("/admin/tokens/personalaccesstoken/")
    check_page(
        page,
        live_server,
        "user-admin-tokens",
        screen,
        columns="tokens",
        buttons=[page.get_by_role("button", name="Go")],
    )
    # The why is in the list: the revocation's cause, the inactive token's reason.
    row = page.locator("#result_list tr", has_text="Leaked deploy key")
    expect(row.locator(".token-why")).to_have_text("Revoked by an administrator")
    expect(page.locator("#result_list tr", has_text="Writer bot").locator(".token-why")).to_contain_text("Writer")

    page.locator("#result_list a", has_text="Leaked deploy key").click()
    check_page(page, live_server, "user-admin-token", screen)
    expect(page.locator(".field-why")).to_contain_text("Pasted into a public CI log")
    expect(page.locator(".field-revoked_by_who")).to_contain_text(main_admin.username)
    page.get_by_role("link", name="History").click()
    # HISTORY opens the token's audit events, not Django's empty history page.
    page.wait_for_url("**/admin/iam/auditevent/?about=token:*")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)  # created, revoked
    check_page(page, live_server, "user-admin-token-history", screen, columns="audit")

    page.goto("/admin/iam/auditevent/")
    check_page(
        page,
        live_server,
        "user-admin-audit",
        screen,
        columns="audit",
        buttons=[page.get_by_role("link", name="Export CSV")],
    )
    expect(page.locator(".paginator")).to_contain_text("audit events")
    expect(page.locator(".breadcrumbs")).to_contain_text("Analysis")

    page.goto("/admin/iam/user/")
    check_page(page, live_server, "user-admin-users", screen, columns="users")
    page.locator("#result_list a", has_text=scene.user.email).click()
    check_page(
        page, live_server, "user-admin-user", screen, buttons=[page.get_by_role("button", name="Save", exact=True)]
    )
    # The user's tokens, linked to the overview filtered to them, and their grants by name.
    tokens = page.locator(".field-tokens_summary")
    expect(tokens).to_contain_text("7 tokens")
    tokens.get_by_role("link").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(7)
    page.go_back()
    expect(page.locator(".field-role select").first).to_contain_text(f"Reader ({scene.application.name})")

    # A main administrator's account is read-only to them, and links nowhere they are refused.
    page.goto(f"/admin/iam/user/{main_admin.pk}/change/")
    check_page(page, live_server, "user-admin-main-admin", screen)
    context.close()


@pytest.mark.parametrize("screen", ["desktop", "phone"])
def test_application_administrator_walks_applications_and_roles(browser, live_server, scene, app_admin, screen):
    context, page = open_as(browser, live_server, app_admin, DESKTOP if screen == "desktop" else PHONE)
    page.goto("/admin/")
    check_page(page, live_server, "app-admin-index", screen)
    page.goto("/admin/tenants/application/")
    check_page(page, live_server, "app-admin-applications", screen)
    page.goto(f"/admin/tenants/application/{scene.application.pk}/change/")
    check_page(
        page,
        live_server,
        "app-admin-application",
        screen,
        buttons=[page.get_by_role("button", name="Save", exact=True)],
    )
    page.goto("/admin/iam/role/")
    check_page(page, live_server, "app-admin-roles", screen)
    context.close()


@pytest.mark.parametrize("screen", ["desktop", "phone"])
def test_main_administrator_walks_every_list(browser, live_server, scene, main_admin, screen):
    context, page = open_as(browser, live_server, main_admin, DESKTOP if screen == "desktop" else PHONE)
    page.goto("/admin/")
    check_page(page, live_server, "main-admin-index", screen)
    page.goto("/admin/tokens/personalaccesstoken/")
    check_page(page, live_server, "main-admin-tokens", screen, columns="tokens")
    page.goto("/admin/iam/auditevent/")
    check_page(page, live_server, "main-admin-audit", screen, columns="audit")
    page.goto("/admin/iam/user/")
    check_page(page, live_server, "main-admin-users", screen, columns="users")
    page.goto("/admin/tenants/tenant/")
    check_page(page, live_server, "main-admin-tenants", screen)
    page.goto(f"/admin/tenants/tenant/{scene.tenant.pk}/change/")
    check_page(page, live_server, "main-admin-tenant", screen)
    context.close()


@pytest.mark.parametrize("screen", ["desktop", "phone"])
def test_end_user_walks_their_tokens(browser, live_server, scene, screen):
    context, page = open_as(browser, live_server, scene.user, DESKTOP if screen == "desktop" else PHONE)
    check_page(page, live_server, "end-user-tokens", screen)
    page.goto("/tokens/new/")
    check_page(page, live_server, "end-user-create", screen, buttons=[page.get_by_role("button", name="Create token")])
    context.close()
