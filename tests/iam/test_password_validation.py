"""AUTH_PASSWORD_VALIDATORS apply wherever a password is set: the console's
add-user form, its set-password form, and an administrator's own password
change. (End users have no password page; ``manage.py createsuperuser`` and
``changepassword`` are Django's and validate too.)"""

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.contrib.auth.hashers import check_password
from django.test import Client

from iam.models import User
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

NEW_USERNAME = "acme-user-new"
STRONG = "Quartz-lantern-harbour-42"
# weakness: (a password with it, for the user whose password is set; the validator's message)
WEAK: dict[str, tuple[Callable[[str], str], str]] = {
    "too short": (lambda username: "Xy7!abc", "This password is too short"),
    "common": (lambda username: "password123", "This password is too common"),
    "entirely numeric": (lambda username: "8675309123", "This password is entirely numeric"),
    "like the username": (lambda username: f"{username}-2026", "The password is too similar to the username"),
}


@dataclass(frozen=True)
class PasswordForm:
    url: str
    new_fields: tuple[str, str]  # the new password and its confirmation
    whose: str  # "user", "administrator" (the one signed in) or "new"
    other_fields: Callable[[object], dict] = field(default=lambda world: {})


FORMS = {
    "console add user": PasswordForm(
        "/admin/iam/user/add/",
        ("password1", "password2"),
        "new",
        lambda world: {
            "username": NEW_USERNAME,
            "email": "new@acme.example",
            "tenant": world.tenant.pk,
            "usable_password": "true",
            # the role grants inline, empty
            "role_grants-TOTAL_FORMS": "0",
            "role_grants-INITIAL_FORMS": "0",
        },
    ),
    "console set a user's password": PasswordForm(
        "/admin/iam/user/{user.pk}/password/", ("password1", "password2"), "user"
    ),
    "own password change": PasswordForm(
        "/admin/password_change/",
        ("new_password1", "new_password2"),
        "administrator",
        lambda world: {"old_password": PASSWORD},
    ),
}


@pytest.fixture
def console(world, main_admin) -> Client:
    client = Client()
    client.force_login(main_admin)
    return client


def submit(form: PasswordForm, console: Client, world, main_admin, make_password: Callable[[str], str]):
    """Post ``form`` with a new password made for the user whose password it sets; return (response, password)."""
    username = {"user": world.user.username, "administrator": main_admin.username, "new": NEW_USERNAME}[form.whose]
    password = make_password(username)
    data = {**form.other_fields(world), form.new_fields[0]: password, form.new_fields[1]: password}
    return console.post(form.url.format(user=world.user), data), password


def password_hashes() -> dict[str, str]:
    return dict(User.objects.values_list("username", "password"))


@pytest.mark.parametrize("weakness", WEAK)
@pytest.mark.parametrize("form", FORMS)
def test_a_weak_password_is_refused(console, world, main_admin, form, weakness):
    make_password, message = WEAK[weakness]
    before = password_hashes()
    response, password = submit(FORMS[form], console, world, main_admin, make_password)
    assert response.status_code == 200 and message in response.content.decode()
    assert password_hashes() == before  # nobody created, no password changed
    assert not any(check_password(password, encoded) for encoded in before.values())


@pytest.mark.parametrize("form", FORMS)
def test_a_strong_password_is_accepted(console, world, main_admin, form):
    """The control: the same forms take a good password, so the refusals above are the validators'."""
    response, _ = submit(FORMS[form], console, world, main_admin, lambda username: STRONG)
    assert response.status_code == 302
    username = {"user": world.user.username, "administrator": main_admin.username, "new": NEW_USERNAME}[
        FORMS[form].whose
    ]
    assert User.objects.get(username=username).check_password(STRONG)
