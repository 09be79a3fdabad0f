"""Administrators in the console, in a real browser."""

import json

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.browser.test_self_service import call_me
from tests.factories import PASSWORD
from tokens.models import PersonalAccessToken, TokenStatus
from tokens.rules import token_state

pytestmark = pytest.mark.django_db(transaction=True)


def console_sign_in(page, user) -> None:
    page.goto("/admin/")
    page.wait_for_url("**/accounts/login/**")
    page.get_by_label("Username or email").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/admin/")


def test_user_administrator_revokes_one_then_several_tokens(page, live_server, world, user_admin):
    single = world.issue("CI deploy")
    bulk = [world.issue(f"Sync {i}") for i in range(2)]
    kept = world.issue("Keep me")
    assert call_me(live_server.url, single.plaintext)[0] == 200
    console_sign_in(page, user_admin)
    page.get_by_role("link", name="Personal access tokens").first.click()
    screenshot(page, "console-overview")

    # One token, from its page.
    page.get_by_role("link", name="CI deploy").click()
    page.get_by_role("link", name="Revoke personal access token").click()
    expect(page.get_by_text("Revoking is irreversible")).to_be_visible()
    confirm = page.get_by_role("button", name="Yes, revoke irreversibly")
    # The irreversible button is coloured as Django's delete button is, not as Save.
    assert confirm.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(186, 33, 33)"
    confirm.click()
    expect(page.get_by_text("revoked. Its owner has been told.")).to_be_visible()
    assert call_me(live_server.url, single.plaintext)[0] == 401

    # Several at once, from the list.
    page.goto("/admin/tokens/personalaccesstoken/")
    for issued in bulk:
        page.locator(f'input[name="_selected_action"][value="{issued.token.pk}"]').check()
    page.locator('select[name="action"]').select_option("revoke_selected")
    page.get_by_role("button", name="Go").click()
    expect(page.get_by_text("Revoking is irreversible")).to_be_visible()
    page.get_by_role("button", name="Yes, revoke irreversibly").click()
    expect(page.get_by_text("2 tokens revoked. Their owners have been told.")).to_be_visible()
    for issued in bulk:
        assert call_me(live_server.url, issued.plaintext)[0] == 401
    assert call_me(live_server.url, kept.plaintext)[0] == 200
    assert PersonalAccessToken.objects.filter(status=TokenStatus.REVOKED).count() == 3


def test_another_tenants_ids_in_the_url_give_404(page, world, other_world, user_admin):
    theirs = other_world.issue("Theirs").token
    console_sign_in(page, user_admin)
    for path in (
        f"/admin/tokens/personalaccesstoken/{theirs.pk}/change/",
        f"/admin/tokens/personalaccesstoken/{theirs.pk}/revoke/",
        f"/admin/iam/user/{other_world.user.pk}/change/",
        f"/admin/tenants/tenant/{other_world.tenant.pk}/change/",
    ):
        assert page.goto(path).status == 404
    assert page.goto("/admin/tenants/tenant/add/").status == 403  # tenants are the main administrators' to create
    assert other_world.tenant.name not in page.goto("/admin/tenants/tenant/").text()
    assert PersonalAccessToken.objects.get(pk=theirs.pk).status == TokenStatus.ACTIVE


def test_making_a_role_unavailable_warns_then_makes_the_token_inactive(page, live_server, world, app_admin):
    issued = world.issue("Reader token", roles=("reader",))
    console_sign_in(page, app_admin)
    page.goto("/admin/iam/role/")
    page.locator(f'input[name="_selected_action"][value="{world.reader.pk}"]').check()
    page.locator('select[name="action"]').select_option("set_unavailable_for_pat")
    page.get_by_role("button", name="Go").click()
    expect(page.get_by_text("This change makes 1 active token inactive.")).to_be_visible()
    expect(page.get_by_role("cell", name=world.tenant.name)).to_be_visible()  # a count per tenant: no token names
    assert page.get_by_text("Reader token").count() == 0
    screenshot(page, "console-inactivation-warning")
    assert call_me(live_server.url, issued.plaintext)[0] == 200  # nothing saved yet
    page.get_by_role("button", name="Yes, save and make 1 token inactive").click()
    expect(page.get_by_text("1 role set unavailable for PAT; 1 token changed state.")).to_be_visible()
    assert token_state(issued.token).status == "inactive"
    assert call_me(live_server.url, issued.plaintext)[0] == 401


def test_dashboard_renders(page, world, main_admin):
    for i in range(3):
        world.issue(f"Token {i}", days=5 + i * 20)
    console_sign_in(page, main_admin)
    page.get_by_role("link", name="Dashboard").click()
    for name in ("tokens by status", "active tokens expiring soon", "Token use per day over the last 30 days"):
        expect(page.get_by_role("img", name=name)).to_be_visible()
    assert page.locator("svg title", has_text="active: 3").count() == 1
    screenshot(page, "console-dashboard")


def test_user_administrator_registers_a_webhook_sees_its_secret_once_and_its_deliveries(
    browser, live_server, world, user_admin
):
    from django.utils import timezone

    from tests.tokens.test_webhooks import Receiver, verify
    from tokens.models import WebhookDelivery
    from tokens.webhooks import webhook_deliveries_send

    hooks = Receiver(answers=(500, 200))
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        console_sign_in(page, user_admin)
        page.get_by_role("link", name="Webhook endpoints").first.click()
        page.get_by_role("link", name="Add webhook endpoint").click()
        page.get_by_label("URL").fill(hooks.url)
        page.get_by_label("Description").fill("SIEM")
        screenshot(page, "console-webhook-add")
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.get_by_text("it will not be shown again")).to_be_visible()
        secret = page.locator("#one-time-secret").input_value()
        assert secret.startswith("whsec_")
        page.get_by_role("link", name="I have copied it").click()

        world.issue("CI deploy")  # its creation is announced; the receiver fails the first attempt
        page.get_by_role("link", name=hooks.url).click()
        expect(page.locator('#webhook-deliveries tr[data-status="pending"]')).to_have_count(1)
        expect(page.get_by_text("HTTP 500")).to_be_visible()
        page.get_by_role("button", name="Send test event").click()
        expect(page.get_by_text("queued")).to_be_visible()
        # The test event went out; the creation waits for its retry (order is kept per token).
        expect(page.locator('#webhook-deliveries tr[data-status="delivered"]')).to_have_count(1)
        WebhookDelivery.objects.filter(status="pending").update(
            next_attempt_at=timezone.now()
        )  # as if the backoff had passed
        webhook_deliveries_send(WebhookDelivery.objects.first().endpoint_id)
        page.reload()
        expect(page.locator('#webhook-deliveries tr[data-status="delivered"]')).to_have_count(2)
        assert secret not in page.content()
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the endpoint page scrolls sideways by {overflow}px"
        screenshot(page, "console-webhook-deliveries")
        types = [json.loads(body)["type"] for _, body in hooks.received]
        assert types == ["token.created", "webhook.test", "token.created"]
        for headers, body in hooks.received:
            verify(secret, headers, body)
    finally:
        context.close()
        hooks.close()
