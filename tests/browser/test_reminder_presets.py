"""The tenant's expiry reminders in a real browser: the presets fill the
field under the site's CSP (no inline script), and the page does not scroll
sideways on a phone."""

import pytest

from tests.browser.conftest import screenshot
from tests.browser.test_console import console_sign_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)])
def test_a_preset_fills_the_reminder_days_and_is_saved(page, world, user_admin, width, height):
    page.set_viewport_size({"width": width, "height": height})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: problems.append(message.text) if "Content Security" in message.text else None)
    console_sign_in(page, user_admin)
    page.goto(f"/admin/tenants/tenant/{world.tenant.pk}/change/")
    field = page.get_by_label("Expiry reminders (days before)")
    assert field.input_value() == "7, 1"
    preset = page.get_by_role("button", name="30, 7 and 1 days")
    assert preset.is_visible()  # the script ran and showed the presets
    assert page.get_by_role("button", name="7 and 1 days", exact=True).get_attribute("aria-pressed") == "true"
    preset.click()
    assert field.input_value() == "30, 7, 1" and preset.get_attribute("aria-pressed") == "true"
    box = preset.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= width
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    screenshot(page, f"tenant-reminder-presets-{width}")
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url("**/admin/tenants/tenant/")
    world.tenant.refresh_from_db()
    assert world.tenant.reminder_days == [30, 7, 1]
    assert problems == []
