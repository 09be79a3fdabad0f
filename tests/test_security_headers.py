"""Security headers on every kind of response: pages, the console, the API,
the embed pages, and the errors (400, 401, 403, 404, 405, 429, 500).

Each case asserts its status first, so a case that stopped producing the
response it names fails instead of silently testing something else.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from tests.conftest import World
from tests.factories import PASSWORD
from tokens.services import embed_token_issue

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.error_urls")]

PORTAL = "https://portal.example"


@dataclass
class Site:
    world: World
    main_admin: object
    credential: str
    pat: str

    def signed_in(self, user=None, **kwargs) -> Client:
        client = Client(**kwargs)
        client.force_login(user or self.world.user)
        return client

    def api(self, authorization: str | None = None) -> APIClient:
        api = APIClient()
        if authorization:
            api.credentials(HTTP_AUTHORIZATION=authorization)
        return api

    def embedding_token(self) -> str:
        from tokens.models import IntegrationCredential

        return embed_token_issue(
            credential=IntegrationCredential.objects.get(),
            user=self.world.user,
            application=self.world.application,
            session_minutes=5,
            pat_seconds=600,
        ).plaintext


@pytest.fixture
def site(world, main_admin, credential, settings):
    settings.SIGN_IN_FAILURES_PER_USERNAME = 1
    world.application.embed_url = "https://crm.example/embed"
    world.application.embed_parent_origins = PORTAL
    world.application.save()
    return Site(world, main_admin, credential.plaintext, world.issue().plaintext)


def too_many_sign_ins(site: Site):
    client = Client()
    client.post("/accounts/login/", {"username": site.world.user.username, "password": "wrong"})
    return client.post("/accounts/login/", {"username": site.world.user.username, "password": PASSWORD})


def too_many_leak_reports(site: Site):
    api = site.api()
    for _ in range(100):  # the limit is 10 a minute per address
        response = api.post("/api/v1/leaked-tokens", {"token": "pat_nothing"}, format="json")
        if response.status_code != 202:
            break
    return response


def invalid_create_form(site: Site):
    client = site.signed_in()
    form_id = re.search(r'name="form_id" value="([^"]+)"', client.get("/tokens/new/").content.decode()).group(1)
    return client.post("/tokens/new/", {"form_id": form_id, "name": ""})


def embed_open(site: Site):
    return Client().get(f"/embed-apps/{site.world.application.pk}", {"personal-access-token": site.embedding_token()})


def embed_path(site: Site, suffix: str = "") -> str:
    return f"/embed-apps/{site.world.application.pk}{suffix}"


# (kind, expected status, request). Kinds: "page" (HTML of this service),
# "api" (JSON), "embed" (pages meant to be framed by the configured portals).
CASES: dict[str, tuple[str, int, Callable[[Site], object]]] = {
    # pages
    "sign-in page": ("page", 200, lambda s: Client().get("/accounts/login/")),
    "self-service list": ("page", 200, lambda s: s.signed_in().get("/tokens/")),
    "self-service create": ("page", 200, lambda s: s.signed_in().get("/tokens/new/")),
    "self-service form error 400": ("page", 400, lambda s: invalid_create_form(s)),
    "console index": ("page", 200, lambda s: s.signed_in(s.main_admin).get("/admin/")),
    "console token overview": (
        "page",
        200,
        lambda s: s.signed_in(s.main_admin).get("/admin/tokens/personalaccesstoken/"),
    ),
    "redirect to sign in": ("page", 302, lambda s: Client().get("/tokens/")),
    "page 404": ("page", 404, lambda s: Client().get("/no-such-page/")),
    "console 403 for an end user": ("page", 403, lambda s: s.signed_in().get("/admin/login/")),
    "csrf 403": ("page", 403, lambda s: Client(enforce_csrf_checks=True).post("/accounts/login/", {})),
    "sign-out 405": ("page", 405, lambda s: s.signed_in().get("/accounts/logout/")),
    "bad host 400": ("page", 400, lambda s: Client(HTTP_HOST="evil.example").get("/accounts/login/")),
    "nul byte 400": ("page", 400, lambda s: Client().get("/accounts/login/?next=%00")),
    "sign-in 429": ("page", 429, too_many_sign_ins),
    "page 500": ("page", 500, lambda s: Client(raise_request_exception=False).get("/test-errors/boom/")),
    "api docs": ("page", 200, lambda s: Client().get("/api/docs/")),
    # API
    "api me": ("api", 200, lambda s: s.api(f"Bearer {s.pat}").get("/api/v1/me")),
    "api 401 no credentials": ("api", 401, lambda s: s.api().get("/api/v1/me")),
    "api 401 bad token": ("api", 401, lambda s: s.api("Bearer pat_wrong").get("/api/v1/me")),
    "api 403 missing permission": ("api", 403, lambda s: s.api(f"Bearer {s.pat}").get("/api/v1/admin/health")),
    "api 404": ("api", 404, lambda s: s.api(f"Bearer {s.pat}").get("/api/v1/no-such-thing")),
    "api 405": ("api", 405, lambda s: s.api(f"Bearer {s.pat}").delete("/api/v1/me")),
    "api 400": ("api", 400, lambda s: s.api().post("/api/v1/leaked-tokens", {"token": 1}, format="json")),
    "api 429": ("api", 429, too_many_leak_reports),
    "api 500": ("api", 500, lambda s: Client(raise_request_exception=False).get("/api/v1/test-errors/boom")),
    "api embedding token (a secret)": (
        "api",
        201,
        lambda s: s.api(f"Basic {s.credential}").post(
            "/api/ext/users/personal-access-token",
            {"email": s.world.user.email, "appId": str(s.world.application.pk), "sessionExpiry": 5, "patExpiry": 60},
            format="json",
        ),
    ),
    "api user tokens 401": (
        "api",
        401,
        lambda s: s.api().get(f"/api/v1/users/{s.world.user.pk}/personal-access-tokens"),
    ),
    "oauth token 401": (
        "api",
        401,
        lambda s: Client().post("/oauth/token", "grant_type=x", content_type="application/x-www-form-urlencoded"),
    ),
    "oauth metadata": ("api", 200, lambda s: Client().get("/.well-known/oauth-authorization-server")),
    "api schema": ("api", 200, lambda s: Client().get("/api/schema/")),
    "demo app backend 401": ("api", 401, lambda s: Client().get("/demo-app/api/whoami")),
    # embed pages
    "embed open": ("embed", 303, embed_open),
    "embed open 401": ("embed", 401, lambda s: Client().get(embed_path(s), {"personal-access-token": "pat_wrong"})),
    "embed frame": ("embed", 200, lambda s: Client().get(embed_path(s, "/frame"))),
    "embed unknown application 404": ("embed", 404, lambda s: Client().get("/embed-apps/not-a-uuid/frame")),
    "embed 405": ("embed", 405, lambda s: Client().post(embed_path(s, "/frame"))),
    "demo app": ("embed", 200, lambda s: Client().get("/demo-app/")),
}


@pytest.mark.parametrize("case", CASES)
def test_every_response_carries_the_security_headers(site, case):
    kind, status, send = CASES[case]
    response = send(site)
    assert response.status_code == status

    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Permissions-Policy"] == "camera=(), microphone=(), geolocation=(), payment=()"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    # Nothing dynamic may sit in a shared cache or the browser's history cache.
    assert "no-store" in response["Cache-Control"]
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "object-src 'none'" in csp

    if kind == "embed":
        # Framed only by the application's portals (or by nobody); no Referer leaves.
        ancestors = csp.split("frame-ancestors", 1)[1].split(";")[0].split()
        assert set(ancestors) <= {"'none'", "'self'", PORTAL} and ancestors
        assert response["Referrer-Policy"] == "no-referrer"
    else:
        assert csp == settings.CONTENT_SECURITY_POLICY  # frame-ancestors 'none'
        assert response["X-Frame-Options"] == "DENY"
        assert response["Referrer-Policy"] == "same-origin"


def test_embed_pages_are_framed_only_by_the_configured_portal(site):
    csp = Client().get(embed_path(site, "/frame"))["Content-Security-Policy"]
    assert f"frame-ancestors {PORTAL}" in csp


def test_only_public_data_may_be_cached(site):
    """The cacheable answers choose so themselves; none of them carries a secret."""
    assert Client().get("/.well-known/jwks.json")["Cache-Control"] == "public, max-age=300"
    static = Client().get("/static/css/app.css")
    assert static.status_code == 200 and "no-store" not in static["Cache-Control"]
    assert static["X-Content-Type-Options"] == "nosniff"
