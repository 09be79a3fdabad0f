"""Demo data: two tenants, three applications, roles, end users and administrators.

Loaded through the same services as real changes. Loading creates only what
is missing (a tenant, application, switch, role or user not there yet) and
never undoes a later change: a role an administrator removed, a switch turned
off, a password changed all stay as they are, and nobody is signed out.
Printing (``demo_data_read``) changes nothing.
"""

import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction

from iam.models import Role, ServiceRole, User
from iam.selectors import user_admin_kind
from iam.services import role_grant_add
from iam.tenancy import tenant_application_set_pats_allowed
from tenants.models import Application, Tenant, TenantApplication

TENANTS = [
    {"slug": "acme", "name": "Acme Corporation", "pat_max_lifetime_days": None},
    {"slug": "globex", "name": "Globex Industries", "pat_max_lifetime_days": 90},
]

# Seed 002's portal backend listens on port 3001; the demo lets it frame the CRM.
DEMO_PORTAL_ORIGINS = "http://localhost:3001 http://127.0.0.1:3001"

# (slug, name, fixed id, {tenant slug: allows PATs})
APPLICATIONS = [
    ("crm", "CRM", "8ba8bf0e-6b8f-4e07-abb9-6fd2d816fabc", {"acme": True, "globex": True}),
    ("calendar", "Calendar", "1f0e6a52-3f9b-4d53-8a55-2b8f0c1d7e01", {"acme": True, "globex": True}),
    ("finance", "Finance", "5c2d9b7e-8a41-4f6c-9d3e-7b1a2c3d4e5f", {"acme": True, "globex": False}),
]

# (application, code, name, description, permissions, PAT-eligible)
ROLES = [
    (
        "crm",
        "sales_rep",
        "Sales representative",
        "Read and update contacts, read orders.",
        ["crm.contacts.read", "crm.contacts.write", "crm.orders.read"],
        True,
    ),
    ("crm", "crm_reader", "CRM read-only", "Read contacts and orders.", ["crm.contacts.read", "crm.orders.read"], True),
    (
        "crm",
        "crm_admin",
        "CRM administrator",
        "Change CRM settings and delete contacts.",
        ["crm.settings.manage", "crm.contacts.delete"],
        False,
    ),
    (
        "calendar",
        "calendar_user",
        "Calendar user",
        "Read and write your calendar events.",
        ["calendar.events.read", "calendar.events.write"],
        True,
    ),
    (
        "finance",
        "accountant",
        "Accountant",
        "Read and create invoices.",
        ["finance.invoices.read", "finance.invoices.create"],
        True,
    ),
    ("finance", "controller", "Controller", "Approve invoices.", ["finance.invoices.approve"], False),
    (
        "finance",
        "payments_exporter",
        "Payments exporter",
        "Export payment runs for the bank.",
        ["finance.payments.export"],
        True,
    ),
]
# Tokens granting these wait for a user administrator's approval (carol approves alice's).
NEEDS_TOKEN_APPROVAL = {"finance:payments_exporter"}

# (username, tenant, can create PATs, application roles, service roles)
USERS = [
    (
        "alice",
        "acme",
        True,
        [
            "crm:sales_rep",
            "crm:crm_reader",
            "calendar:calendar_user",
            "finance:accountant",
            "finance:payments_exporter",
        ],
        [],
    ),
    ("bob", "acme", False, ["crm:sales_rep", "calendar:calendar_user"], []),
    ("dave", "globex", True, ["crm:crm_reader", "calendar:calendar_user", "finance:accountant"], []),
    ("admin", "acme", True, [], [ServiceRole.MAIN_ADMINISTRATOR, ServiceRole.DEVELOPER]),
    ("carol", "acme", True, [], [ServiceRole.USER_ADMINISTRATOR]),
    ("erin", "globex", False, [], [ServiceRole.USER_ADMINISTRATOR]),
    ("arthur", "acme", False, ["crm:crm_admin"], [ServiceRole.APPLICATION_ADMINISTRATOR]),
]


def demo_password(username: str) -> str:
    return f"{username.capitalize()}-demo-2026!"


@dataclass
class DemoData:
    tenants: list[Tenant] = field(default_factory=list)
    applications: list[Application] = field(default_factory=list)
    users: list[User] = field(default_factory=list)


@transaction.atomic
def load_demo_data() -> DemoData:
    """Create the demo rows that are missing; return what is there afterwards."""
    tenants = {}
    for spec in TENANTS:
        tenants[spec["slug"]], _ = Tenant.objects.get_or_create(slug=spec["slug"], defaults=spec)
    applications = {}
    for slug, name, app_id, switches in APPLICATIONS:
        defaults = {"name": name, "id": uuid.UUID(app_id)}
        if slug == "crm":
            defaults.update(embed_url=f"{settings.PUBLIC_URL}/demo-app/", embed_parent_origins=DEMO_PORTAL_ORIGINS)
        application, _ = Application.objects.get_or_create(slug=slug, defaults=defaults)
        applications[slug] = application
        for tenant_slug, allowed in switches.items():
            tenant = tenants[tenant_slug]
            if not TenantApplication.objects.filter(tenant=tenant, application=application).exists():
                tenant_application_set_pats_allowed(tenant=tenant, application=application, allowed=allowed, actor=None)
    roles = {}
    for app_slug, code, name, description, permissions, eligible in ROLES:
        role, _ = Role.objects.get_or_create(
            application=applications[app_slug],
            code=code,
            defaults={
                "name": name,
                "description": description,
                "permissions": permissions,
                "pat_eligible": eligible,
                "needs_token_approval": f"{app_slug}:{code}" in NEEDS_TOKEN_APPROVAL,
            },
        )
        roles[f"{app_slug}:{code}"] = role
    for username, tenant_slug, can_create, app_roles, service_roles in USERS:
        if User.objects.filter(username__iexact=username).exists():
            continue
        user = User(
            username=username,
            email=f"{username}@{tenant_slug}.example",
            tenant=tenants[tenant_slug],
            can_create_pats=can_create,
            first_name=username.capitalize(),
            is_staff=bool(service_roles and service_roles != [ServiceRole.DEVELOPER]),
            is_superuser=ServiceRole.MAIN_ADMINISTRATOR in service_roles,
        )
        user.set_password(demo_password(username))
        user.save()
        for key in app_roles:
            role_grant_add(user=user, role=roles[key], actor=None)
        for code in service_roles:
            role_grant_add(user=user, role=Role.objects.get(application=None, code=code), actor=None)
    return demo_data_read()


def demo_data_read() -> DemoData:
    """The demo rows that exist, as they are now (nothing is written)."""
    return DemoData(
        tenants=list(Tenant.objects.filter(slug__in=[spec["slug"] for spec in TENANTS]).order_by("pk")),
        applications=list(Application.objects.filter(slug__in=[spec[0] for spec in APPLICATIONS]).order_by("slug")),
        users=list(
            User.objects.filter(username__in=[spec[0] for spec in USERS]).select_related("tenant").order_by("pk")
        ),
    )


def demo_data_as_json(data: DemoData) -> dict:
    """The demo data in the shape scripts rely on (see the README)."""
    links = {
        (link.tenant.slug, link.application_id): link.allows_pats
        for app in data.applications
        for link in app.tenant_links.select_related("tenant")
    }
    return {
        "tenants": [
            {"slug": t.slug, "name": t.name, "pat_max_lifetime_days": t.max_token_lifetime_days} for t in data.tenants
        ],
        "applications": [
            {
                "id": str(app.pk),
                "slug": app.slug,
                "name": app.name,
                "allows_pats_in": sorted(t.slug for t in data.tenants if links.get((t.slug, app.pk))),
            }
            for app in data.applications
        ],
        "users": [
            {
                "id": user.pk,
                "username": user.username,
                "email": user.email,
                "password": demo_password(user.username),
                "tenant": user.tenant.slug,
                "can_create_pats": user.can_create_pats,
                "admin": user_admin_kind(user),
                "service_roles": sorted(
                    g.role.code for g in user.role_grants.select_related("role") if g.role.is_service_role
                ),
                "roles": [
                    {
                        "application": g.role.application.slug,
                        "code": g.role.code,
                        "name": g.role.name,
                        "pat_eligible": g.role.pat_eligible,
                        "permissions": list(g.role.permissions),
                    }
                    for g in user.role_grants.select_related("role__application").order_by(
                        "role__application__slug", "role__code"
                    )
                    if not g.role.is_service_role
                ],
            }
            for user in data.users
        ],
    }
