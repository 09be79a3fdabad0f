"""Sudo mode in Chromium: regenerating a token after an old sign-in asks for
the password, then completes the regeneration the user asked for."""

import re
import time

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from playwright.sync_api import expect

from iam.reauth import AUTHENTICATED_AT_SESSION_KEY
from tests.browser.conftest import screenshot, sign_in
from tests.browser.test_self_service import TOKEN_RE, call_me
from tests.factories import PASSWORD
from tokens.models import PersonalAccessToken, RotatedSecret

pytestmark = pytest.mark.django_db(transaction=True)


def age_the_sign_in(page) -> None:
    """As if the browser's user signed in longer ago than sudo mode allows."""
    (cookie,) = [cookie for cookie in page.context.cookies() if cookie["name"] == settings.SESSION_COOKIE_NAME]
    session = SessionStore(session_key=cookie["value"])
    session[AUTHENTICATED_AT_SESSION_KEY] = int(time.time()) - settings.REAUTHENTICATION_SECONDS - 1
    session.save()


@pytest.mark.parametrize("viewport", [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_regenerating_after_an_old_sign_in_confirms_the_password_and_keeps_the_choices(
    browser, live_server, world, viewport
):
    width, height = viewport
    context = browser.new_context(base_url=live_server.url, viewport={"width": width, "height": height})
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        issued = world.issue("deploy")
        sign_in(page, world.user.username, PASSWORD)
        age_the_sign_in(page)
        page.locator(f'[data-token-id="{issued.token.pk}"]').get_by_role("link", name=re.compile("^Regenerate")).click()
        page.get_by_label("90 days").check()
        page.get_by_label("In 1 hour").check()
        page.get_by_role("button", name="Regenerate token").click()

        expect(page.get_by_role("heading", name="Confirm your password")).to_be_visible()
        expect(page.get_by_text("Confirm your password to regenerate “deploy”")).to_be_visible()
        assert not RotatedSecret.objects.exists()
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the confirmation scrolls sideways by {overflow}px"
        screenshot(page, f"confirm-password-{width}")

        page.get_by_label(f"Password for {world.user.username}").fill("not my password")
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("alert")).to_have_text("That is not your password.")
        assert not RotatedSecret.objects.exists()

        page.get_by_label(f"Password for {world.user.username}").fill(PASSWORD)
        page.get_by_role("button", name="Confirm").click()
        secret = page.locator("#token-secret").input_value()
        assert TOKEN_RE.fullmatch(secret) and secret != issued.plaintext
        expect(page.get_by_text("keeps working until")).to_be_visible()  # the grace period chosen before
        token = PersonalAccessToken.objects.get(pk=issued.token.pk)
        assert 89 <= (token.expires_at - RotatedSecret.objects.get().rotated_at).days <= 90
        assert call_me(live_server.url, secret)[0] == 200
        assert call_me(live_server.url, issued.plaintext)[0] == 200  # its grace period
        assert secret not in page.url
    finally:
        context.close()
