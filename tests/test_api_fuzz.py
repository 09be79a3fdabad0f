"""Schemathesis against the service's own OpenAPI schema.

Every operation of ``/api/schema/`` is called through the real WSGI stack,
against the test database with real data, with valid and with invalid
credentials, with data that fits the schema and data that does not. Every
answer must be documented (status code, content type, headers, body) and none
may be a 5xx. ``SCHEMATHESIS_MAX_EXAMPLES`` (30) is the number of examples
per operation, credential and mode (a third of it for invalid credentials):
raise it for a longer run.
"""

import base64
import os
import time
from collections import Counter
from dataclasses import dataclass

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, Phase, Verbosity, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from iam.models import ServiceRole
from iam.tenancy import tenant_set_api_issuance
from tests.factories import UserFactory, administrative_pat, grant, service_role
from tokens import keys
from tokens.credentials import integration_credential_create
from tokens.models import IntegrationCredential
from tokens.oauth import oauth_client_create

pytestmark = pytest.mark.django_db

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "30"))
MIN_CASES = 1000


@dataclass
class Credentials:
    """Valid and invalid ``Authorization`` headers, and a real user and token to address."""

    pat: str
    admin_pat: str
    integration: str
    oauth_client: str
    user_id: int
    token_name: str

    @staticmethod
    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def credentials(world) -> Credentials:
    admin = UserFactory(username="fuzz-admin", tenant=world.tenant)
    grant(admin, service_role(ServiceRole.MAIN_ADMINISTRATOR), service_role(ServiceRole.DEVELOPER))
    tenant_set_api_issuance(tenant=world.tenant, allowed=True, actor=None)
    # The per-token request limit is tenant data, not a setting: make room for the run.
    world.tenant.token_requests_per_minute = 1_000_000
    world.tenant.save(update_fields=["token_requests_per_minute"])
    pat = world.issue("fuzzed")
    admin_pat = administrative_pat(admin, ServiceRole.MAIN_ADMINISTRATOR, ServiceRole.DEVELOPER)
    integration = integration_credential_create(
        tenant=world.tenant,
        name="fuzz portal",
        actor=None,
        scopes=[IntegrationCredential.Scope.EMBED, IntegrationCredential.Scope.TOKENS_MANAGE],
    )
    client = oauth_client_create(application=world.application, name="fuzz client", actor=None, token_exchange=True)
    return Credentials(
        pat=pat.plaintext,
        admin_pat=admin_pat.plaintext,
        integration=integration.plaintext,
        oauth_client=Credentials.basic(client.client.client_id, client.secret),
        user_id=world.user.pk,
        token_name=pat.token.name,
    )


@pytest.fixture
def wsgi_app():
    # As Django's test client does: closing "old" connections at request
    # boundaries would end the test's transaction and lose its data.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield WSGIHandler()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def generous_limits(settings):
    """Rate limits sized for a fuzzing run, not turned off: 429 stays possible and documented."""
    settings.AUTH_FAILURES_PER_MINUTE_PER_IP = 1_000_000
    settings.TOKEN_CREATIONS_PER_MINUTE = 1_000_000
    settings.LEAK_REPORTS_PER_MINUTE = 1_000_000


def variants(operation, creds: Credentials) -> list[tuple[str, dict, dict, int]]:
    """(label, headers, path parameters, examples) to call an operation with:
    each of its valid credentials, aimed at the real user and token, then
    invalid and missing ones. Those are refused before the request is read,
    so fewer examples cover them."""
    pat, admin_pat = f"Bearer {creds.pat}", f"Bearer {creds.admin_pat}"
    credential = f"Basic {creds.integration}"
    wrong_pat = ("wrong PAT", f"Bearer {keys.generate()}")
    wrong_credential = ("wrong credential", f"Basic {keys.generate(keys.CREDENTIAL_PREFIX)}")
    wrong_client = ("wrong client", Credentials.basic("oc_unknown", keys.generate(keys.CLIENT_SECRET_PREFIX)))
    none = ("no credentials", None)
    by_path = {
        "/oauth/": ([("client", creds.oauth_client)], [wrong_client, none]),
        "/api/ext/": ([("credential", credential)], [wrong_credential, none]),
        "/api/v1/users/": (
            [("admin PAT", admin_pat), ("credential", credential), ("end user's PAT", pat)],
            [wrong_pat, wrong_credential, none],
        ),
        "/api/v1/admin/": ([("admin PAT", admin_pat), ("end user's PAT", pat)], [wrong_pat, none]),
        "/api/v1/me": ([("PAT", pat)], [wrong_pat, none]),
    }
    prefix = next((prefix for prefix in by_path if operation.path.startswith(prefix)), None)
    valid, invalid = by_path[prefix] if prefix else ([none], [wrong_pat])  # public operations
    real = {
        name: value
        for name, value in (("userId", creds.user_id), ("name", creds.token_name))
        if f"{{{name}}}" in operation.path
    }
    headers = {label: {"Authorization": header} if header else {} for label, header in valid + invalid}
    return [(label, headers[label], real, MAX_EXAMPLES) for label, _ in valid] + [
        (label, headers[label], {}, max(5, MAX_EXAMPLES // 3)) for label, _ in invalid
    ]


# Operations whose rules go beyond what a schema can say, so schema-valid data
# may get 400: a role the user holds, a name not taken, an expiry within the
# tenant's maximum; for OAuth (RFC 6749), a valid subject token and one client
# authentication method (a Basic header, or client_secret in the body).
RULES_BEYOND_THE_SCHEMA = {
    "POST /api/v1/users/{userId}/personal-access-tokens",
    "PATCH /api/v1/users/{userId}/personal-access-tokens/{name}",
    "POST /api/v1/users/{userId}/personal-access-tokens/{name}/rotate",
    "POST /api/v1/tokens/self/rotate",
    "POST /oauth/token",
    "POST /oauth/introspect",
    "POST /oauth/revoke",
}


def run_operation(operation, mode, headers, path_parameters, examples: int, executed: Counter, label: str) -> None:
    excluded = [positive_data_acceptance] if operation.label in RULES_BEYOND_THE_SCHEMA else []

    @hypothesis_settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,  # a failure's message carries the case and a curl command
    )
    @given(case=operation.as_strategy(generation_mode=mode, headers=headers, path_parameters=path_parameters or None))
    def check(case):
        executed[label] += 1
        # Each case starts from the same data: what one writes is rolled back.
        with transaction.atomic():
            case.call_and_validate(excluded_checks=excluded)
            transaction.set_rollback(True)

    check()


def test_every_operation_answers_as_documented(wsgi_app, credentials, generous_limits):
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app)
    # A NUL character is refused everywhere (core.middleware, DRF's CharField),
    # which no schema states: tests/test_bad_input.py sends them instead.
    schema.config.generation.update(allow_x00=False)
    executed: Counter = Counter()
    failures = []
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        for name, headers, path_parameters, examples in variants(operation, credentials):
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                label = f"{operation.label} [{name}, {mode.value}]"
                try:
                    run_operation(operation, mode, headers, path_parameters, examples, executed, label)
                except Unsatisfiable:
                    continue  # nothing to make invalid (no parameters, no body)
                except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001 - report every operation's failures
                    failures.append(f"{label}: {error}")
    total = sum(executed.values())
    print(f"schemathesis: {total} cases in {time.monotonic() - started:.1f} s")
    assert not failures, "\n\n".join(failures)
    assert total >= MIN_CASES, executed
