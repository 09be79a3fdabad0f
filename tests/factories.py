import importlib
from functools import cache

import factory
from django.apps import apps as django_apps
from django.contrib.auth.hashers import make_password

from iam.models import Role, RoleGrant, User
from tenants.models import Application, Tenant, TenantApplication

PASSWORD = "correct-horse-battery-staple"


@cache
def _password_hash() -> str:
    # One real Argon2 hash for every test user: hashing per user costs ~0.1 s each.
    return make_password(PASSWORD)


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.Sequence(lambda n: f"Tenant {n}")


class ApplicationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Application

    slug = factory.Sequence(lambda n: f"app-{n}")
    name = factory.Sequence(lambda n: f"Application {n}")


class TenantApplicationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TenantApplication

    tenant = factory.SubFactory(TenantFactory)
    application = factory.SubFactory(ApplicationFactory)
    allows_pats = True


class RoleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Role

    application = factory.SubFactory(ApplicationFactory)
    code = factory.Sequence(lambda n: f"role_{n}")
    name = factory.Sequence(lambda n: f"Role {n}")
    permissions = factory.LazyAttribute(lambda role: [f"{role.code}.read"])
    pat_eligible = True


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.test")
    tenant = factory.SubFactory(TenantFactory)
    can_create_pats = True
    password = factory.LazyFunction(_password_hash)


def grant(user: User, *roles: Role) -> None:
    for role in roles:
        RoleGrant.objects.get_or_create(user=user, role=role)


def service_role(code: str) -> Role:
    """Return one of the service's own roles. A transactional test flushes the
    rows the data migration created, so create them again when missing."""
    if not Role.objects.filter(application=None, code=code).exists():
        importlib.import_module("iam.migrations.0003_service_roles").create_service_roles(django_apps, None)
        importlib.import_module("iam.migrations.0005_token_management_permission").add_permission(django_apps, None)
    return Role.objects.get(application=None, code=code)


def administrative_pat(user: User, *roles: str):
    """Issue ``user`` an administrative token (this service's API) with the
    given service roles, valid for a week; returns the IssuedToken."""
    import uuid
    from datetime import timedelta

    from django.utils import timezone

    from tokens.services import token_create

    return token_create(
        owner=user,
        application=None,
        name=f"admin {uuid.uuid4().hex[:8]}",
        role_codes=list(roles),
        expires_at=timezone.now() + timedelta(days=7),
    )
