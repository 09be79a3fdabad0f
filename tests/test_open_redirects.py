"""No redirect leaves the site, whatever ``next`` (or any other return address)
a link carries: sign-in, sign-out, the console's sign-in hop, and the embed pages."""

import re
from urllib.parse import urlencode, urlsplit

import pytest
from django.test import Client

from tests.factories import PASSWORD
from tokens.models import IntegrationCredential
from tokens.services import embed_token_issue

pytestmark = pytest.mark.django_db

HOSTILE = [
    "//evil.example",
    "///evil.example",
    "https://evil.example/",
    "http://evil.example",
    "HTTPS://evil.example",
    "https:evil.example",
    "http:/evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    " //evil.example",
    "\t//evil.example",
    "/\t/evil.example",
    "//testserver@evil.example",
    "https://testserver@evil.example",
    "https://testserver.evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
]


def stays_on_site(location: str) -> bool:
    """Read the address as a browser would (backslashes are slashes, tabs and
    newlines vanish) and accept only a path on this site."""
    seen = re.sub(r"[\t\n\r]", "", location).replace("\\", "/").strip()
    parts = urlsplit(seen)
    return not parts.scheme and not parts.netloc and seen.startswith("/") and not seen.startswith("//")


def test_the_judge_itself():
    assert stays_on_site("/tokens/") and stays_on_site("/tokens/new/?x=//evil.example")
    assert not any(stays_on_site(target) for target in HOSTILE)


@pytest.mark.parametrize("target", HOSTILE)
def test_sign_in_never_redirects_off_site(world, target):
    client = Client()
    page = client.get("/accounts/login/", {"next": target})
    assert "evil.example" not in page.content.decode()  # not carried into the form either
    response = client.post(
        f"/accounts/login/?{_query(target)}", {"username": world.user.username, "password": PASSWORD, "next": target}
    )
    assert response.status_code == 302 and stays_on_site(response["Location"])
    assert response["Location"] == "/tokens/"


@pytest.mark.parametrize("target", HOSTILE)
def test_a_signed_in_visit_to_the_sign_in_page_never_redirects_off_site(world, target):
    client = Client()
    client.force_login(world.user)
    response = client.get("/accounts/login/", {"next": target})
    assert response.status_code == 302 and response["Location"] == "/tokens/"


@pytest.mark.parametrize("target", HOSTILE)
def test_sign_out_never_redirects_off_site(world, target):
    client = Client()
    client.force_login(world.user)
    response = client.post(f"/accounts/logout/?{_query(target)}", {"next": target})
    assert response.status_code == 302 and stays_on_site(response["Location"])


@pytest.mark.parametrize("target", HOSTILE)
def test_the_consoles_sign_in_hop_stays_on_site(world, target):
    response = Client().get("/admin/login/", {"next": target})
    assert response.status_code == 302 and stays_on_site(response["Location"])
    assert response["Location"].startswith("/accounts/login/?next=")


def test_a_safe_next_is_followed(world):
    """The control: ``next`` works at all, so the refusals above are decisions."""
    response = Client().post(
        "/accounts/login/?next=/tokens/new/", {"username": world.user.username, "password": PASSWORD}
    )
    assert response["Location"] == "/tokens/new/"


@pytest.mark.parametrize("target", HOSTILE[:6])
def test_embed_pages_go_only_to_their_own_frame(world, credential, target):
    token = embed_token_issue(
        credential=IntegrationCredential.objects.get(),
        user=world.user,
        application=world.application,
        session_minutes=5,
        pat_seconds=600,
    ).plaintext
    response = Client().get(
        f"/embed-apps/{world.application.pk}",
        {"personal-access-token": token, "next": target, "redirect": target, "return_to": target, "url": target},
    )
    assert response.status_code == 303
    assert re.fullmatch(rf"/embed-apps/{world.application.pk}/frame#session=[^/?#]+", response["Location"])


@pytest.mark.parametrize("app_id", ["%2F%2Fevil.example", "..%2F..%2F%2Fevil.example", "https:%2F%2Fevil.example"])
def test_a_hostile_application_id_is_no_redirect(world, app_id):
    response = Client().get(f"/embed-apps/{app_id}", {"personal-access-token": "pat_anything"})
    assert response.status_code in (401, 404) and "Location" not in response


def _query(target: str) -> str:
    return urlencode({"next": target})
