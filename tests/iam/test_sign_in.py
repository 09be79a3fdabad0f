"""Sign-in: failed attempts limited per address and per username, a session
id planted before sign-in is worthless after it, and sign-out ends the session."""

import time

import pytest
from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client

from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

# A day: a fixed window that will not roll over in the middle of a test.
WINDOW = 24 * 60 * 60


@pytest.fixture
def limits(settings):
    settings.SIGN_IN_FAILURES_PER_USERNAME = 3
    settings.SIGN_IN_FAILURES_PER_IP = 5
    settings.SIGN_IN_WINDOW_SECONDS = WINDOW


@pytest.fixture
def password_checks():
    """The sign-ins that reached the password check, as Django reports them."""
    checked = []

    def failed(sender, credentials, **kwargs):
        checked.append(("failed", credentials["username"]))

    def succeeded(sender, user, **kwargs):
        checked.append(("succeeded", user.username))

    user_login_failed.connect(failed)
    user_logged_in.connect(succeeded)
    yield checked
    user_login_failed.disconnect(failed)
    user_logged_in.disconnect(succeeded)


def sign_in(username: str, password: str, ip: str = "10.0.0.1") -> tuple[Client, object]:
    client = Client(REMOTE_ADDR=ip)
    return client, client.post("/accounts/login/", {"username": username, "password": password})


def is_signed_in(client: Client) -> bool:
    return client.get("/tokens/").status_code == 200


# ---------------------------------------------------------------- limits


def test_past_the_limit_even_the_right_password_is_refused_unchecked(world, limits, password_checks):
    username = world.user.username
    for _ in range(settings.SIGN_IN_FAILURES_PER_USERNAME):
        _, response = sign_in(username, "wrong password")
        assert response.status_code == 200 and b"Please enter a correct" in response.content
    assert len(password_checks) == settings.SIGN_IN_FAILURES_PER_USERNAME

    client, refused = sign_in(username, PASSWORD)
    assert refused.status_code == 429
    assert "Too many sign-in attempts. Try again in" in refused.content.decode()
    assert 0 < int(refused["Retry-After"]) <= WINDOW
    assert not is_signed_in(client)
    world.user.refresh_from_db()
    assert world.user.last_login is None
    # The password was never looked at: Django reported no check of it.
    assert len(password_checks) == settings.SIGN_IN_FAILURES_PER_USERNAME


def test_the_username_limit_ignores_case_and_surrounding_spaces(world, limits):
    for spelling in ("acme-user", "ACME-USER", " Acme-User "):
        sign_in(spelling, "wrong password")
    _, response = sign_in("acme-user", PASSWORD)
    assert response.status_code == 429


def test_another_username_from_the_same_address_is_unaffected(world, limits):
    for _ in range(settings.SIGN_IN_FAILURES_PER_USERNAME + 1):
        sign_in(world.user.username, "wrong password")
    colleague = UserFactory(username="colleague", tenant=world.tenant)
    client, response = sign_in(colleague.username, PASSWORD)
    assert response.status_code == 302 and is_signed_in(client)


def test_an_address_past_its_limit_is_refused_and_other_addresses_are_not(world, limits):
    for n in range(settings.SIGN_IN_FAILURES_PER_IP):
        sign_in(f"guess-{n}", "wrong password", ip="10.6.6.6")
    _, refused = sign_in(world.user.username, PASSWORD, ip="10.6.6.6")
    assert refused.status_code == 429
    client, response = sign_in(world.user.username, PASSWORD, ip="10.0.0.2")
    assert response.status_code == 302 and is_signed_in(client)


def test_successful_sign_ins_do_not_count(world, limits):
    for _ in range(settings.SIGN_IN_FAILURES_PER_USERNAME + 2):
        _, response = sign_in(world.user.username, PASSWORD)
        assert response.status_code == 302
    for _ in range(settings.SIGN_IN_FAILURES_PER_USERNAME - 1):
        sign_in(world.user.username, "wrong password")
    _, response = sign_in(world.user.username, PASSWORD)
    assert response.status_code == 302


def test_allowed_again_once_the_window_has_passed(world, settings):
    settings.SIGN_IN_FAILURES_PER_USERNAME = 1
    settings.SIGN_IN_WINDOW_SECONDS = 1
    for _ in range(3):  # in the rare run whose two attempts straddle a second, start again
        _sleep_into_the_next_second()
        window = int(time.time())
        sign_in(world.user.username, "wrong password")
        _, refused = sign_in(world.user.username, PASSWORD)
        if int(time.time()) == window:
            break
    assert refused.status_code == 429
    _sleep_into_the_next_second()
    client, response = sign_in(world.user.username, PASSWORD)
    assert response.status_code == 302 and is_signed_in(client)


def _sleep_into_the_next_second() -> None:
    time.sleep(1.02 - time.time() % 1)


def test_without_the_cache_sign_in_still_works(world, limits, settings, caplog):
    """The limits fail open (logged) rather than locking everyone out when Redis is down."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    for _ in range(settings.SIGN_IN_FAILURES_PER_USERNAME + 1):
        sign_in(world.user.username, "wrong password")
    client, response = sign_in(world.user.username, PASSWORD)
    assert response.status_code == 302 and is_signed_in(client)
    assert "rate limit cache unavailable" in caplog.text


# ---------------------------------------------------------------- session


def test_a_session_id_planted_before_sign_in_is_replaced_and_worthless(world):
    planted = SessionStore()
    planted["planted"] = True
    planted.create()  # a real session, as an attacker would obtain by visiting the site

    victim = Client()
    victim.cookies[settings.SESSION_COOKIE_NAME] = planted.session_key
    response = victim.post("/accounts/login/", {"username": world.user.username, "password": PASSWORD})
    assert response.status_code == 302 and is_signed_in(victim)

    assert victim.cookies[settings.SESSION_COOKIE_NAME].value != planted.session_key
    assert not SessionStore().exists(planted.session_key)
    attacker = Client()
    attacker.cookies[settings.SESSION_COOKIE_NAME] = planted.session_key
    assert not is_signed_in(attacker)


def test_sign_out_ends_the_session(world):
    client, _ = sign_in(world.user.username, PASSWORD)
    session_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert SessionStore().exists(session_key)

    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert response.cookies[settings.SESSION_COOKIE_NAME].value == ""  # the browser drops it
    assert not SessionStore().exists(session_key)
    replay = Client()
    replay.cookies[settings.SESSION_COOKIE_NAME] = session_key
    assert not is_signed_in(replay)


# ---------------------------------------------------------------- compatibility forms of a username (security review)


@pytest.mark.parametrize(
    ("real", "variants"),
    [
        ("bob", ["ｂob", "ｂｏb", "𝐛𝐨𝐛", " BOB "]),  # fullwidth, mathematical bold, case and spaces
        ("fiona", ["ﬁona", "ＦＩＯＮＡ"]),  # a ligature
        ("rené", ["rene\u0301", "RENE\u0301"]),  # a combining accent
    ],
)
def test_compatibility_forms_of_a_username_share_its_limit(world, limits, password_checks, real, variants):
    UserFactory(username=real, tenant=world.tenant)
    for _ in range(settings.SIGN_IN_FAILURES_PER_USERNAME):
        assert sign_in(real, "wrong password", ip="10.9.9.9")[1].status_code == 200
    checked = len(password_checks)
    for index, variant in enumerate(variants):
        client, response = sign_in(variant, PASSWORD, ip=f"10.8.0.{index}")
        assert response.status_code == 429, variant
        assert not is_signed_in(client)
    assert len(password_checks) == checked  # none of them reached the password check


def test_the_username_and_the_email_of_an_account_share_its_limit(world, limits, password_checks):
    for _ in range(settings.SIGN_IN_FAILURES_PER_USERNAME):
        sign_in(world.user.username, "wrong password", ip="10.9.9.9")
    client, response = sign_in(world.user.email.upper(), PASSWORD, ip="10.8.0.1")
    assert response.status_code == 429 and not is_signed_in(client)
