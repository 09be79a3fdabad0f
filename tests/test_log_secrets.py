"""The guard that keeps secrets out of log lines (tests/log_secrets.py, on for
every test through tests/conftest.py) really fails a test that logs one.

Each case logs a secret the way a careless change could, checks that the
guard flags it and that the failure message does not repeat it, then drops
the lines so this test itself passes."""

import base64
import logging

import pytest
from django.contrib.auth import authenticate

from iam.models import RoleGrant
from tests.log_secrets import LEDGER, LogLine, find_leaks
from tokens import keys
from tokens.credentials import integration_credential_create
from tokens.models import PersonalAccessToken
from tokens.oauth import PAT_TOKEN_TYPE, oauth_client_create, token_exchange

pytestmark = pytest.mark.django_db

log = logging.getLogger("some.library.deep.inside")


def an_unissued_token() -> str:
    body = keys.PREFIX + "Q" * keys.RANDOM_LENGTH
    return body + keys.checksum(body)


def pat_in_a_debug_line(world) -> str:
    token = world.issue().plaintext
    log.debug("calling the CRM with %s", token)
    return token


def pat_without_its_display_prefix(world) -> str:
    token = world.issue().plaintext
    log.info("token tail %s", token[keys.DISPLAY_PREFIX_LENGTH :])
    return token


def credential_in_a_traceback(world) -> str:
    secret = integration_credential_create(tenant=world.tenant, name="portal", actor=None).plaintext
    try:
        raise ValueError(f"bad credential {secret}")
    except ValueError:
        log.exception("integration failed")
    return secret


def client_secret_in_a_dict_argument(world) -> str:
    secret = oauth_client_create(application=world.application, name="c", actor=None, token_exchange=True).secret
    log.warning("%r", {"client_secret": secret})
    return secret


def access_token_from_the_exchange(world) -> str:
    client = oauth_client_create(application=world.application, name="c", actor=None, token_exchange=True)
    access_token = token_exchange(
        client=client.client, subject_token=world.issue().plaintext, subject_token_type=PAT_TOKEN_TYPE
    )["access_token"]
    log.error("upstream refused %s", access_token)
    return access_token


def password_set_in_the_test(world) -> str:
    world.user.set_password("Tr0ub4dor-and-3-more")
    log.debug("new password for %s: %s", world.user.username, "Tr0ub4dor-and-3-more")
    return "Tr0ub4dor-and-3-more"


def password_typed_at_sign_in(world) -> str:
    authenticate(username=world.user.username, password="Wrong-but-still-secret-1")
    log.info("failed sign-in with %s", "Wrong-but-still-secret-1")
    return "Wrong-but-still-secret-1"


def token_never_issued_here(world) -> str:
    token = an_unissued_token()
    log.info("Authorization: Basic %s", base64.b64encode(b"x").decode() + " " + token)
    return token


def token_in_a_non_propagating_logger(world) -> str:
    token = world.issue().plaintext
    logging.getLogger("django.server").info('"GET /embed?personal-access-token=%s HTTP/1.1" 200', token)
    return token


def token_as_an_sql_parameter(world) -> str:
    token = world.issue().plaintext
    PersonalAccessToken.objects.filter(name=token).exists()  # SQL is logged with its parameters
    return token


LEAKS = [
    pat_in_a_debug_line,
    pat_without_its_display_prefix,
    credential_in_a_traceback,
    client_secret_in_a_dict_argument,
    access_token_from_the_exchange,
    password_set_in_the_test,
    password_typed_at_sign_in,
    token_never_issued_here,
    token_in_a_non_propagating_logger,
    token_as_an_sql_parameter,
]


@pytest.mark.parametrize("leak", LEAKS, ids=[leak.__name__ for leak in LEAKS])
def test_a_logged_secret_fails_the_test(world, no_secret_in_logs, leak):
    secret = leak(world)
    try:
        assert no_secret_in_logs.leaks(), "the guard missed it"
        with pytest.raises(pytest.fail.Exception, match="hold a secret") as failure:
            no_secret_in_logs.verify()
        needle = secret[keys.DISPLAY_PREFIX_LENGTH :] if secret[3:4] == "_" else secret
        assert needle not in str(failure.value)  # the report does not leak it again
    finally:
        no_secret_in_logs.forget()


def test_what_may_be_logged_is_not_flagged(world, no_secret_in_logs):
    token = world.issue().plaintext
    wrong_checksum = token[:-1] + ("A" if token[-1] != "A" else "B")
    log.info("token %s… (%s)", keys.display_prefix(token), "pat_" + "x" * 10)
    log.info("malformed %s", wrong_checksum)
    log.info("a hash %s", keys.digest(token))
    assert no_secret_in_logs.leaks() == []


def test_formatting_a_line_runs_no_query(world, no_secret_in_logs, django_assert_num_queries):
    grant = RoleGrant.objects.filter(user=world.user).first()  # its __str__ follows two relations
    fresh = RoleGrant.objects.get(pk=grant.pk)
    with django_assert_num_queries(0):
        log.debug("grant %s", fresh)
        log.debug("grants %s", RoleGrant.objects.all())
    assert no_secret_in_logs.lines[-1].text.startswith("grants <QuerySet")


def test_the_checker_on_its_own():
    token = an_unissued_token()
    lines = [LogLine("x", "INFO", "nothing here"), LogLine("x", "DEBUG", f"token={token}")]
    assert [leak.line for leak in find_leaks(lines, [])] == [lines[1]]
    assert [leak.why for leak in find_leaks(lines, ["here-is-a-password"])] == ["holds a well-formed pat_ secret"]
    assert find_leaks([LogLine("x", "INFO", "pw here-is-a-password")], ["here-is-a-password"])


def test_secrets_made_outside_a_test_stay_on_the_ledger():
    from tests.factories import PASSWORD

    assert PASSWORD in LEDGER.secrets()
