"""An owner limits a token to a network in Chromium; a call from elsewhere is
refused and the token's page shows the address it came from."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, sign_in
from tests.browser.test_self_service import TOKEN_RE, call_me
from tests.factories import PASSWORD
from tokens.models import PersonalAccessToken

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_owner_limits_a_token_to_networks_and_sees_the_refused_address(page, live_server, world):
    sign_in(page, world.user.username, PASSWORD)
    page.goto("/tokens/new/")
    page.get_by_label("Application").select_option(label=world.application.name)
    page.get_by_label("Name").fill("Office printer")
    page.get_by_label("Reader", exact=True).check()
    page.get_by_label("Allowed networks").fill("127.0.0.0/8\n2001:db8::/32")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#token-secret").input_value()
    assert TOKEN_RE.fullmatch(secret)
    assert call_me(live_server.url, secret)[0] == 200  # the live server sees 127.0.0.1

    token = PersonalAccessToken.objects.get(name="Office printer")
    page.goto(f"/tokens/{token.pk}/edit/")
    expect(page.get_by_label("Allowed networks")).to_have_value("127.0.0.0/8\n2001:db8::/32")
    page.get_by_label("Allowed networks").fill("203.0.113.0/24")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**/tokens/")
    status, body = call_me(live_server.url, secret)
    assert status == 401 and body["error"]["code"] == "invalid_token"  # the same answer as any bad token
    page.goto(f"/tokens/{token.pk}/edit/")
    expect(page.locator("#last-refused")).to_contain_text("127.0.0.1")
    screenshot(page, "token-networks")
    page.goto("/tokens/")
    card = page.locator(f'[data-token-id="{token.pk}"]')
    expect(card.get_by_text("203.0.113.0/24")).to_be_visible()
    expect(card.get_by_text("refused 127.0.0.1", exact=False)).to_be_visible()
