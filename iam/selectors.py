"""Reads about users, roles and administrator kinds."""

from django.db.models import QuerySet

from iam.models import ADMINISTRATOR_ROLES, AuditEvent, Role, RoleGrant, ServiceRole, User
from tenants.models import Tenant


def user_service_roles(user: User) -> set[str]:
    """Return the codes of the service roles (administrator kinds, developer) ``user`` holds."""
    if not user.is_active:
        return set()
    cached = getattr(user, "_service_roles", None)
    if cached is None:
        cached = set(
            RoleGrant.objects.filter(user=user, role__application__isnull=True).values_list("role__code", flat=True)
        )
        user._service_roles = cached
    return cached


def users_holding_service_role(code: str) -> QuerySet[User]:
    """Return the users who hold the service role ``code`` (an administrator kind), active or not."""
    return User.objects.filter(role_grants__role__application__isnull=True, role_grants__role__code=code)


def user_holds_administrator_role(user: User) -> bool:
    """Return True if ``user`` holds an administrator role, active or not: a
    deactivated administrator's account is still an administrator's account."""
    return RoleGrant.objects.filter(
        user=user, role__application__isnull=True, role__code__in=list(ADMINISTRATOR_ROLES)
    ).exists()


def user_admin_kind(user: User) -> str | None:
    """Return the user's highest administrator kind: "main", "user", "application" or None."""
    held = user_service_roles(user)
    for role in ADMINISTRATOR_ROLES:
        if role in held:
            return role.removesuffix("_administrator")
    return None


def user_is_main_administrator(user: User) -> bool:
    return ServiceRole.MAIN_ADMINISTRATOR in user_service_roles(user)


def user_administers_tenant_users(user: User, tenant_id: int) -> bool:
    """Return True if ``user`` may see and manage the users and tokens of the tenant."""
    held = user_service_roles(user)
    if ServiceRole.MAIN_ADMINISTRATOR in held:
        return True
    return ServiceRole.USER_ADMINISTRATOR in held and user.tenant_id == tenant_id


def user_administers_applications(user: User) -> bool:
    """Return True if ``user`` may configure applications and their roles."""
    held = user_service_roles(user)
    return bool(held & {ServiceRole.MAIN_ADMINISTRATOR, ServiceRole.APPLICATION_ADMINISTRATOR})


def roles_held_for_tokens(user: User) -> QuerySet[Role]:
    """Return the roles ``user`` holds that an administrator made available for
    personal access tokens (seed 003): all a token of theirs may grant."""
    return Role.objects.filter(pat_eligible=True, grants__user=user)


def visible_to(user: User, rows: QuerySet) -> QuerySet:
    """The ``rows`` (of any model with a ``tenant``) an administrator may see:
    all for a main administrator, their own tenant's for a user
    administrator, none otherwise."""
    if user_is_main_administrator(user):
        return rows
    if ServiceRole.USER_ADMINISTRATOR in user_service_roles(user):
        return rows.filter(tenant_id=user.tenant_id)
    return rows.none()


def tenants_visible_to(user: User) -> QuerySet[Tenant]:
    """The tenants an administrator may see and choose: every one for a main
    administrator, their own for anyone else."""
    tenants = Tenant.objects.order_by("name")
    return tenants if user_is_main_administrator(user) else tenants.filter(pk=user.tenant_id)


def audit_events_visible_to(user: User) -> QuerySet[AuditEvent]:
    """Return the audit events ``user`` may read (``visible_to``)."""
    return visible_to(user, AuditEvent.objects.select_related("actor", "tenant", "token"))
