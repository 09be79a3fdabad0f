"""Administrator approval in Chromium: an owner on a phone asks for a token
that needs approval, a user administrator at 1280x800 approves it from the
console's queue, and the token works from that moment."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, sign_in
from tests.browser.test_console import console_sign_in
from tests.browser.test_self_service import TOKEN_RE, call_me
from tests.factories import PASSWORD, RoleFactory, grant
from tokens.models import Approval, PersonalAccessToken

pytestmark = pytest.mark.django_db(transaction=True)


def sideways_overflow(page) -> int:
    return page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")


def test_an_owner_asks_on_a_phone_and_an_administrator_approves_from_the_queue(browser, live_server, world, user_admin):
    auditor = RoleFactory(
        application=world.application,
        code="auditor",
        name="Auditor",
        permissions=["ledger.read"],
        needs_token_approval=True,
    )
    grant(world.user, auditor)
    user_admin.first_name, user_admin.last_name = "Ada", "Admin"
    user_admin.save()

    phone = browser.new_context(base_url=live_server.url, viewport={"width": 390, "height": 844})
    owner = phone.new_page()
    sign_in(owner, world.user.username, PASSWORD)
    owner.goto("/tokens/new/")
    owner.get_by_label("Application").select_option(label=world.application.name)
    owner.get_by_label("Name").fill("Ledger export")
    owner.get_by_label("Auditor (needs an administrator's approval)").check()
    owner.get_by_role("button", name="Create token").click()
    expect(owner.get_by_text("will not work until it is approved")).to_be_visible()
    secret = owner.locator("#token-secret").input_value()
    assert TOKEN_RE.fullmatch(secret)
    assert call_me(live_server.url, secret)[0] == 401
    owner.get_by_role("link", name="back to my tokens").click()
    card = owner.locator('[data-status="pending"]')
    expect(card.get_by_text("Awaiting approval", exact=True)).to_be_visible()
    expect(card.get_by_text("It can be approved by Ada Admin")).to_be_visible()
    assert sideways_overflow(owner) <= 0
    screenshot(owner, "token-awaiting-approval-phone")

    desktop = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 800})
    admin = desktop.new_page()
    console_sign_in(admin, user_admin)
    admin.get_by_role("link", name="Approval requests").first.click()
    token = PersonalAccessToken.objects.get(name="Ledger export")
    admin.locator(f'input[name="_selected_action"][value="{token.pk}"]').check()
    admin.locator('select[name="action"]').select_option("approve_selected")
    admin.get_by_role("button", name="Go").click()
    expect(admin.get_by_text("Auditor (needs approval)")).to_be_visible()
    admin.get_by_label("Note for the owner (optional)").fill("For the audit")
    screenshot(admin, "console-approval-confirmation")
    admin.get_by_role("button", name="Yes, approve").click()
    expect(admin.get_by_text("1 token approved: it works from now on")).to_be_visible()
    assert call_me(live_server.url, secret)[0] == 200
    token.refresh_from_db()
    assert token.approval == Approval.APPROVED

    owner.reload()
    expect(owner.locator(f'[data-token-id="{token.pk}"][data-status="active"]')).to_be_visible()
    phone.close()
    desktop.close()


def test_a_denial_from_the_token_page_asks_for_a_reason(page, live_server, world, user_admin):
    auditor = RoleFactory(
        application=world.application, code="auditor", name="Auditor", permissions=["x.y"], needs_token_approval=True
    )
    grant(world.user, auditor)
    issued = world.issue("Ledger export", roles=("auditor",))
    console_sign_in(page, user_admin)
    page.goto(f"/admin/tokens/personalaccesstoken/{issued.token.pk}/change/")
    page.get_by_role("link", name="Deny").click()
    expect(page.get_by_text("Denying is final")).to_be_visible()
    reason = page.get_by_label("Reason (required: the owner is told)")
    expect(reason).to_have_attribute("required", "")
    reason.fill("Use the reporting export")
    page.get_by_role("button", name="Yes, deny for good").click()
    expect(page.get_by_text("1 token denied")).to_be_visible()
    expect(page.locator(".token-status-denied")).to_be_visible()
    assert call_me(live_server.url, issued.plaintext)[0] == 401
