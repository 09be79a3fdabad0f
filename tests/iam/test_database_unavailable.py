"""A database that cannot be reached answers 503 with Retry-After, never 500:
the API's JSON error on API paths, a short page elsewhere, and a log line.

No mocks: the default connection is really pointed at a database that cannot
be opened (tests/unreachable_database.py), so every query fails as it would
in production, with Django's own OperationalError.
"""

from collections.abc import Callable

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.conftest import World
from tests.factories import PASSWORD
from tests.unreachable_database import cut_database, restore_database
from tokens.credentials import integration_credential_create

# Transactional: closing the connection must not end a test-wide transaction.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def unreachable():
    yield cut_database
    restore_database()


# Each prepares a client while the database is up and returns the request to
# send once it is down.


def me(world: World) -> Callable[[], object]:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {world.issue().plaintext}")
    return lambda: api.get("/api/v1/me")


def embedding_token(world: World) -> Callable[[], object]:
    credential = integration_credential_create(tenant=world.tenant, name="portal", actor=None).plaintext
    body = {"email": world.user.email, "appSlug": world.application.slug, "sessionExpiry": 5, "patExpiry": 60}
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Basic {credential}")
    return lambda: api.post("/api/ext/users/personal-access-token", body, format="json")


def introspection(world: World) -> Callable[[], object]:
    body = f"token=x&client_id=oc_{'0' * 32}&client_secret=b"  # a client id of our shape: it is looked up
    return lambda: Client().post("/oauth/introspect", body, content_type="application/x-www-form-urlencoded")


def signed_in_page(path: str) -> Callable[[World], Callable[[], object]]:
    def prepare(world: World) -> Callable[[], object]:
        client = Client()
        client.force_login(world.user)
        return lambda: client.get(path)

    return prepare


def sign_in(world: World) -> Callable[[], object]:
    return lambda: Client().post("/accounts/login/", {"username": world.user.username, "password": PASSWORD})


def embed(world: World) -> Callable[[], object]:
    return lambda: Client().get(f"/embed-apps/{world.application.pk}", {"personal-access-token": "pat_x"})


API = {"me": me, "embedding token": embedding_token, "introspection": introspection}
PAGES = {
    "self-service list": signed_in_page("/tokens/"),
    "console": signed_in_page("/admin/"),
    "sign-in": sign_in,
    "embed": embed,
}
UNAVAILABLE = {"code": "service_unavailable", "message": "The service is temporarily unavailable. Try again shortly."}


@pytest.mark.parametrize("name", API)
def test_api_requests_get_a_json_503(world, unreachable, caplog, name):
    send = API[name](world)
    unreachable()
    response = send()
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": UNAVAILABLE}
    assert int(response["Retry-After"]) > 0
    assert "no-store" in response["Cache-Control"]
    logged = [record for record in caplog.records if record.name == "core.middleware"]
    assert logged and logged[0].levelname == "ERROR" and "Database unavailable" in logged[0].getMessage()


@pytest.mark.parametrize("name", PAGES)
def test_pages_get_a_short_503_page(world, unreachable, name):
    send = PAGES[name](world)
    unreachable()
    response = send()
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert "Service temporarily unavailable" in response.content.decode()
    assert int(response["Retry-After"]) > 0
    assert response["X-Frame-Options"] == "DENY" and "Content-Security-Policy" in response


def test_the_same_request_succeeds_once_the_database_is_back(world, unreachable):
    send = API["me"](world)
    unreachable()
    assert send().status_code == 503
    restore_database()
    assert send().status_code == 200


@pytest.mark.urls("tests.error_urls")
def test_a_database_lost_outside_the_view_is_503_too(world, unreachable):
    """The view succeeds, then the session middleware cannot save: no view is
    running, so handler500 turns the failure into the same 503."""
    response = Client(raise_request_exception=False).get("/test-errors/lose-database-after-view/")
    assert response.status_code == 503 and "Retry-After" in response


@pytest.mark.urls("tests.error_urls")
def test_other_failures_are_still_500(world):
    response = Client(raise_request_exception=False).get("/api/v1/test-errors/boom")
    assert response.status_code == 500 and response.json()["error"]["code"] == "server_error"
