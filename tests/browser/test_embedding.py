"""Seed 002's customer portal, on another origin, embeds an application from
this service; its backend is seed 002's Node code talking to the live server."""

import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, sign_in
from tests.conftest import make_world
from tests.factories import PASSWORD
from tokens.credentials import integration_credential_create
from tokens.models import PersonalAccessToken, TokenKind
from tokens.services import token_revoke

pytestmark = pytest.mark.django_db(transaction=True)

PORTAL_DIR = Path(settings.BASE_DIR, "tests", "portal")
PORTAL = "http://127.0.0.1:3001"
SEED_APP_ID = uuid.UUID("8ba8bf0e-6b8f-4e07-abb9-6fd2d816fabc")  # hard-coded in seed 002's page


@pytest.fixture
def embedding_world(live_server):
    return make_world("portalco")


@pytest.fixture
def seed_app(embedding_world, live_server):
    """The world's application re-created under seed 002's application id."""
    from tenants.models import Application, TenantApplication

    app = Application.objects.create(
        id=SEED_APP_ID,
        slug="seed-crm",
        name="Seed CRM",
        embed_url=f"{live_server.url}/demo-app/",
        embed_parent_origins=PORTAL,
    )
    TenantApplication.objects.create(tenant=embedding_world.tenant, application=app, allows_pats=True)
    from tests.factories import RoleFactory, grant

    grant(embedding_world.user, RoleFactory(application=app, code="viewer", name="Viewer", permissions=["crm.view"]))
    return app


@pytest.fixture
def portal(live_server, embedding_world, settings):
    settings.PUBLIC_URL = live_server.url  # the redirectUrl the API returns points at the live server
    if shutil.which("node") is None or not (PORTAL_DIR / "node_modules").exists():
        message = "Node.js and tests/portal/node_modules are needed (make services)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    credential = integration_credential_create(tenant=embedding_world.tenant, name="portal", actor=None)
    env = {**os.environ, "IAM_HOST": live_server.url, "IAM_CREDENTIAL": credential.plaintext}
    process = subprocess.Popen(
        [shutil.which("node"), "server.js"], cwd=PORTAL_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(PORTAL, timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("the portal did not start")
        yield PORTAL
    finally:
        process.terminate()
        process.wait(timeout=10)


def demo_frame(page):
    return page.frame_locator("#app-container iframe").frame_locator("#embedded-app")


def test_portal_embeds_the_application_without_touching_the_users_own_session(
    page, live_server, embedding_world, seed_app, portal
):
    user = embedding_world.user
    sign_in(page, user.username, PASSWORD)
    own_session = next(c["value"] for c in page.context.cookies(live_server.url) if c["name"] == "sessionid")

    page.goto(f"{portal}/?email={user.email}")
    app = demo_frame(page)
    expect(app.get_by_text("Signed in through your portal.")).to_be_visible()
    expect(app.locator("#demo-user")).to_contain_text(user.username)
    expect(app.locator("#demo-application")).to_have_text("Seed CRM")
    expect(app.locator("#demo-permissions")).to_have_text("crm.view")
    screenshot(page, "embedded-portal")

    # No token or session secret is left in any address the frames show.
    assert len(page.frames) == 3
    assert all("pat_" not in frame.url and "emb_" not in frame.url for frame in page.frames)

    # The user's own session with the service is untouched and still works.
    cookies = {c["name"]: c["value"] for c in page.context.cookies(live_server.url)}
    assert cookies["sessionid"] == own_session
    page.goto(f"{live_server.url}/tokens/")
    expect(page.get_by_role("heading", name="Personal access tokens")).to_be_visible()
    embed = PersonalAccessToken.objects.get(kind=TokenKind.EMBED, owner=user)
    assert page.locator(f'[data-token-id="{embed.pk}"]').count() == 1


def test_a_revoked_or_expired_embedding_token_shows_the_error(page, embedding_world, seed_app, portal, main_admin):
    user = embedding_world.user
    page.goto(f"{portal}/?email={user.email}")
    expect(demo_frame(page).get_by_text("Signed in through your portal.")).to_be_visible()
    embed = PersonalAccessToken.objects.get(kind=TokenKind.EMBED, owner=user)
    token_revoke(token=embed, actor=main_admin)
    # The open session ends with its token (the application re-checks it)...
    expect(demo_frame(page).get_by_text("Your session has ended")).to_be_visible()

    # ...and an expired embedding link shows the error page inside the portal's frame.
    page.goto(f"{portal}/?email={user.email}")
    expect(demo_frame(page).get_by_text("Signed in through your portal.")).to_be_visible()
    PersonalAccessToken.objects.filter(kind=TokenKind.EMBED, status="active").update(
        created_at="2000-01-01T00:00Z", expires_at="2000-01-02T00:00Z"
    )
    # The portal loads the same redirectUrl again, as after a page refresh.
    frame = page.locator("#app-container iframe")
    frame.evaluate("(frame, src) => { frame.src = src; }", frame.get_attribute("src"))
    expect(
        page.frame_locator("#app-container iframe").get_by_text("This link is invalid or has expired.")
    ).to_be_visible()
    screenshot(page, "embedded-portal-expired")
