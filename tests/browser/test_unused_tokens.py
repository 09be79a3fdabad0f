"""The unused-token policy in Chromium: an administrator switches it on in the
console at 1280x800; the owner, on a phone, sees when an idle token will be
ended, and afterwards why it was."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, sign_in
from tests.browser.test_console import console_sign_in
from tests.browser.test_self_service import call_me
from tests.factories import PASSWORD
from tokens.idle import idle_tokens_sweep
from tokens.models import PersonalAccessToken, RevocationCause, TokenStatus

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_administrator_switches_the_policy_on_and_the_owner_sees_the_end_coming_and_why(
    browser, live_server, world, user_admin
):
    idle = world.issue("Nightly export", days=300)
    busy = world.issue("Busy sync", days=300)
    long_ago = timezone.now() - timedelta(days=25)
    PersonalAccessToken.objects.filter(pk=idle.token.pk).update(created_at=long_ago)
    PersonalAccessToken.objects.filter(pk=busy.token.pk).update(created_at=long_ago, last_used_at=timezone.now())

    desktop = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 800})
    admin = desktop.new_page()
    console_sign_in(admin, user_admin)
    admin.goto(f"/admin/tenants/tenant/{world.tenant.pk}/change/")
    admin.get_by_label("End tokens not used for (days)").fill("30")
    admin.get_by_role("button", name="Save", exact=True).click()
    expect(admin.locator(".messagelist")).to_contain_text("changed successfully")
    world.tenant.refresh_from_db()
    assert world.tenant.unused_token_days == 30

    phone = browser.new_context(base_url=live_server.url, viewport={"width": 390, "height": 844})
    owner = phone.new_page()
    sign_in(owner, world.user.username, PASSWORD)
    idle_card = owner.locator(f'[data-token-id="{idle.token.pk}"]')
    notice = idle_card.locator("[data-unused-end]")
    expect(notice).to_contain_text("will be ended on")
    expect(notice).to_have_class("notice notice-warning")  # five days left: a warning, not a footnote
    busy_card = owner.locator(f'[data-token-id="{busy.token.pk}"]')
    expect(busy_card.locator("[data-unused-end]")).to_have_class("muted")  # thirty days away
    assert owner.evaluate("() => document.documentElement.scrollWidth - window.innerWidth") <= 0
    screenshot(owner, "token-unused-ends-phone")

    now = timezone.now()
    assert idle_tokens_sweep(now)["warned"] == 1
    assert idle_tokens_sweep(now + timedelta(days=7, minutes=1))["ended"] == 1
    assert call_me(live_server.url, idle.plaintext)[0] == 401
    owner.reload()
    expect(idle_card).to_have_attribute("data-status", "revoked")
    expect(idle_card).to_contain_text("by your tenant's policy for tokens nobody uses")
    expect(idle_card).to_contain_text("had not been used for 30 days")
    stored = PersonalAccessToken.objects.get(pk=idle.token.pk)
    assert stored.status == TokenStatus.REVOKED and stored.revocation_cause == RevocationCause.UNUSED
    phone.close()
    desktop.close()
