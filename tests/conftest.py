from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from iam.models import Role, ServiceRole, User
from tenants.models import Application, Tenant
from tests.factories import (
    PASSWORD,
    RoleFactory,
    TenantApplicationFactory,
    TenantFactory,
    UserFactory,
    grant,
    service_role,
)
from tests.log_secrets import LEDGER, SecretLogGuard, watch_secret_sources
from tests.template_guard import TemplateLookupGuard
from tokens.services import IssuedToken, token_create


@dataclass
class World:
    """One tenant with an application that allows PATs, two PAT-eligible roles
    and one that is not, and an end user who holds all three and may create PATs."""

    tenant: Tenant
    application: Application
    reader: Role
    writer: Role
    admin_role: Role
    user: User

    def issue(
        self, name: str = "integration", roles: tuple[str, ...] | None = None, days: int = 30, **kwargs
    ) -> IssuedToken:
        return token_create(
            owner=kwargs.pop("owner", self.user),
            application=kwargs.pop("application", self.application),
            name=name,
            expires_at=timezone.now() + timedelta(days=days),
            role_codes=list(roles if roles is not None else (self.reader.code, self.writer.code)),
            **kwargs,
        )


def make_world(slug: str) -> World:
    tenant = TenantFactory(slug=slug, name=slug.title())
    link = TenantApplicationFactory(tenant=tenant, application__slug=f"{slug}-crm", application__name=f"{slug} CRM")
    application = link.application
    reader = RoleFactory(application=application, code="reader", name="Reader", permissions=["orders.read"])
    writer = RoleFactory(application=application, code="writer", name="Writer", permissions=["orders.write"])
    admin_role = RoleFactory(
        application=application, code="admin", name="Admin", permissions=["settings.manage"], pat_eligible=False
    )
    user = UserFactory(username=f"{slug}-user", tenant=tenant)
    grant(user, reader, writer, admin_role)
    return World(tenant, application, reader, writer, admin_role, user)


@pytest.fixture
def world(db) -> World:
    return make_world("acme")


@pytest.fixture
def other_world(db) -> World:
    return make_world("globex")


@pytest.fixture
def main_admin(world) -> User:
    user = UserFactory(username="main-admin", tenant=world.tenant)
    grant(user, service_role(ServiceRole.MAIN_ADMINISTRATOR), service_role(ServiceRole.DEVELOPER))
    return user


@pytest.fixture
def user_admin(world) -> User:
    user = UserFactory(username="acme-user-admin", tenant=world.tenant)
    grant(user, service_role(ServiceRole.USER_ADMINISTRATOR))
    return user


@pytest.fixture
def other_user_admin(other_world) -> User:
    user = UserFactory(username="globex-user-admin", tenant=other_world.tenant)
    grant(user, service_role(ServiceRole.USER_ADMINISTRATOR))
    return user


@pytest.fixture
def app_admin(world) -> User:
    user = UserFactory(username="app-admin", tenant=world.tenant)
    grant(user, service_role(ServiceRole.APPLICATION_ADMINISTRATOR))
    return user


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def bearer(api: APIClient, token: str) -> APIClient:
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def pytest_collection_modifyitems(config, items):
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        skip = pytest.mark.skip(reason="needs PostgreSQL (run with DATABASE_URL=postgres://...)")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def credential(world):
    from tokens.credentials import integration_credential_create

    return integration_credential_create(tenant=world.tenant, name="portal", actor=None)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate-limit counters live in the cache: start every test from zero."""
    from django.core.cache import cache

    cache.clear()
    from tokens import usage

    usage._pending.clear()  # counts held in memory belong to the test that made them
    yield


@pytest.fixture(scope="session", autouse=True)
def _watch_secret_sources():
    """Record every secret the code issues (see tests/log_secrets.py)."""
    watch_secret_sources()
    LEDGER.add(PASSWORD)  # hashed once per session (tests.factories), so record it here


@pytest.fixture(autouse=True)
def no_secret_in_logs(_watch_secret_sources):
    """Fail any test during which a log line, at any level and from any logger,
    holds a secret issued in the run or a well-formed token of ours."""
    guard = SecretLogGuard()
    guard.start()
    try:
        yield guard
    finally:
        guard.stop()
    guard.verify()


@pytest.fixture(autouse=True)
def templates_fail_loudly(no_secret_in_logs):
    """Fail any test during which one of our templates looked up something
    that is not there (see tests/template_guard.py)."""
    guard = TemplateLookupGuard()
    guard.start()
    try:
        yield guard
    finally:
        guard.stop()
    guard.verify()
