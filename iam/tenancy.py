"""Administrators' writes to tenants and applications (``tenants`` holds
their data and knows no users: the actor's rights and the audit trail are
identity's)."""

from django.db import transaction

from core.changes import ChangeKind, ChangeReport, IdentityChange, identity_changing
from core.errors import NotPermitted, ValidationFailed
from iam.audit import audit_record
from iam.models import AuditAction, User
from iam.selectors import user_administers_tenant_users, user_is_main_administrator
from iam.services import require_application_admin
from tenants.models import MAX_TOKEN_LIFETIME_DAYS, Application, RouteRule, Tenant, TenantApplication
from tenants.routes import ALLOW, DENY, MAX_RULES, hosts_parsed, rule_errors

# The tenant's settings that the console changes through ``tenant_update`` (audited with old and new value).
TENANT_POLICY_FIELDS = (
    "name",
    "slug",
    "pat_max_lifetime_days",
    "reminder_days",
    "token_requests_per_minute",
    "notify_new_ip",
    "allowed_networks",
    "unused_token_days",
)
# What a tenant's own user administrators may change (its name and slug are the main administrators').
TENANT_ADMIN_POLICY_FIELDS = tuple(name for name in TENANT_POLICY_FIELDS if name not in ("name", "slug"))
# A reminder further out than a token can live would never be sent.
MAX_REMINDER_DAYS = MAX_TOKEN_LIFETIME_DAYS
REMINDER_DAYS_HINT = f"Enter whole days between 1 and {MAX_REMINDER_DAYS}, e.g. 7, 1"


def reminder_days_parsed(text: str) -> tuple[list[int], list[str]]:
    """The days in ``text`` ("7, 1"; spaces or commas between them, brackets
    ignored so pasted JSON works too), largest first, and the errors found."""
    days: list[int] = []
    bad: list[str] = []
    for part in text.replace("[", " ").replace("]", " ").replace(",", " ").split():
        if part.isascii() and part.isdigit() and 1 <= int(part) <= MAX_REMINDER_DAYS:
            days.append(int(part))
        else:
            bad.append(f"“{part[:20]}”")
    errors = [f"{REMINDER_DAYS_HINT} (not {', '.join(bad)})."] if bad else []
    twice = sorted({day for day in days if days.count(day) > 1}, reverse=True)
    if twice:
        errors.append(
            f"Give each day once ({', '.join(map(str, twice))} {'is' if len(twice) == 1 else 'are'} repeated)."
        )
    return sorted(days, reverse=True), errors


def _reminder_days_validated(changes: dict) -> dict:
    """The service's own check of ``reminder_days`` (whatever the caller): whole
    days in range, each once, kept largest first."""
    if "reminder_days" not in changes:
        return changes
    days = changes["reminder_days"]
    valid = isinstance(days, list | tuple) and all(
        isinstance(day, int) and not isinstance(day, bool) and 1 <= day <= MAX_REMINDER_DAYS for day in days
    )
    if not valid or len(set(days)) != len(days):
        raise ValidationFailed({"reminder_days": [f"{REMINDER_DAYS_HINT}, each day once."]})
    return {**changes, "reminder_days": sorted(days, reverse=True)}


@transaction.atomic
def tenant_update(*, tenant: Tenant, changes: dict, actor: User | None, ip: str | None = None) -> Tenant:
    """Change a tenant's settings and policies, validated by the caller's form.

    Every change is audited with its old and new value. Lowering the maximum
    token lifetime brings the expiry of longer-lived tokens within it (the
    tokens' watcher: audited per token, owners told). Main administrators
    change any tenant; a tenant's user administrators its policies. Raises
    ``ValidationFailed`` for reminder days that are not whole days in range,
    each once (they are stored largest first).
    """
    if actor is not None and not user_is_main_administrator(actor):
        if not user_administers_tenant_users(actor, tenant.pk):
            raise NotPermitted("Only an administrator of the tenant can change it.", code="not_tenant_admin")
        if set(changes) & {"name", "slug"}:
            raise NotPermitted("Only a main administrator can rename a tenant.", code="not_main_admin")
    changes = dict(changes)
    api_issuance = changes.pop("admins_may_issue_pats_via_api", None)
    unknown = set(changes) - set(TENANT_POLICY_FIELDS)
    if unknown:
        raise ValueError(f"not a tenant setting: {', '.join(sorted(unknown))}")
    changes = _reminder_days_validated(changes)
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    diff = {name: [getattr(tenant, name), value] for name, value in changes.items() if getattr(tenant, name) != value}
    if diff:
        change = IdentityChange(ChangeKind.TENANT_POLICY, "tenant policy", actor, ip, tenant_id=tenant.pk)
        with identity_changing(change):
            for name, (_, value) in diff.items():
                setattr(tenant, name, value)
            tenant.save(update_fields=list(diff))
        audit_record(action=AuditAction.TENANT_POLICY_CHANGED, tenant_id=tenant.pk, actor=actor, ip=ip, changes=diff)
    if api_issuance is not None:
        tenant = tenant_set_api_issuance(tenant=tenant, allowed=api_issuance, actor=actor, ip=ip)
    return tenant


@transaction.atomic
def tenant_set_api_issuance(*, tenant: Tenant, allowed: bool, actor: User | None, ip: str | None = None) -> Tenant:
    """Switch the tenant policy "administrators may issue PATs through the API" (audited)."""
    if actor is not None and not user_administers_tenant_users(actor, tenant.pk):
        raise NotPermitted("Only an administrator of the tenant can change this policy.")
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if tenant.admins_may_issue_pats_via_api != allowed:
        tenant.admins_may_issue_pats_via_api = allowed
        tenant.save(update_fields=["admins_may_issue_pats_via_api"])
        audit_record(
            action=AuditAction.TENANT_API_ISSUANCE_SWITCHED,
            tenant_id=tenant.pk,
            actor=actor,
            ip=ip,
            changes={"admins_may_issue_pats_via_api": allowed},
        )
    return tenant


@transaction.atomic
def tenant_application_set_pats_allowed(
    *, tenant: Tenant, application: Application, allowed: bool, actor: User | None, ip: str | None = None
) -> ChangeReport:
    """Switch personal access tokens on or off for an application in a tenant.

    The switch governs creating and using tokens: switching it off makes the
    tenant's active tokens for the application inactive. Makes the application
    available in the tenant if it was not.
    """
    require_application_admin(actor)
    link, _ = TenantApplication.objects.select_for_update().get_or_create(tenant=tenant, application=application)
    if link.allows_pats == allowed:
        return ChangeReport()
    cause = f"{application.slug} allows_pats={allowed} in {tenant.slug}"
    change = IdentityChange(
        ChangeKind.PATS_SWITCH, cause, actor, ip, tenant_id=tenant.pk, application_id=application.pk
    )
    with identity_changing(change) as report:
        link.allows_pats = allowed
        link.save(update_fields=["allows_pats"])
    audit_record(
        action=AuditAction.APPLICATION_PATS_SWITCHED,
        tenant_id=tenant.pk,
        actor=actor,
        ip=ip,
        changes={"application": application.slug, "allows_pats": allowed, "tokens_affected": report.tokens_affected},
    )
    return report


@transaction.atomic
def tenant_create(*, tenant: Tenant, actor: User | None, ip: str | None = None) -> Tenant:
    """Save a new tenant built and validated by the console's form (main administrators); audited."""
    if actor is not None and not user_is_main_administrator(actor):
        raise NotPermitted("Only a main administrator can create a tenant.", code="not_main_admin")
    tenant.save()
    audit_record(
        action=AuditAction.TENANT_CREATED,
        tenant_id=tenant.pk,
        actor=actor,
        ip=ip,
        changes={"tenant": tenant.slug, "name": tenant.name},
    )
    return tenant


# What ``application_update`` changes (the console's application form).
APPLICATION_FIELDS = ("name", "slug", "description", "gateway_hosts", "gateway_default")


@transaction.atomic
def application_create(*, application: Application, actor: User | None, ip: str | None = None) -> Application:
    """Save a new application built and validated by the console's form; audited."""
    require_application_admin(actor)
    application.save()
    audit_record(
        action=AuditAction.APPLICATION_CREATED,
        tenant_id=None,
        actor=actor,
        ip=ip,
        changes={"application": application.slug, "name": application.name},
    )
    return application


@transaction.atomic
def application_update(
    *, application: Application, changes: dict, actor: User | None, ip: str | None = None
) -> Application:
    """Change an application's name, slug or description, audited with old and new values."""
    require_application_admin(actor)
    unknown = set(changes) - set(APPLICATION_FIELDS)
    if unknown:
        raise ValueError(f"not an application setting: {', '.join(sorted(unknown))}")
    application = Application.objects.select_for_update().get(pk=application.pk)
    changes = _gateway_validated(application, changes)
    diff = {name: [getattr(application, name), value] for name, value in changes.items()}
    diff = {name: values for name, values in diff.items() if values[0] != values[1]}
    if diff:
        for name, (_, value) in diff.items():
            setattr(application, name, value)
        application.save(update_fields=list(diff))
        audit_record(
            action=AuditAction.APPLICATION_CHANGED,
            tenant_id=None,
            actor=actor,
            ip=ip,
            changes={"application": application.slug, **diff},
        )
    return application


def gateway_hosts_errors(text: str, application: Application | None) -> tuple[str, list[str]]:
    """``text`` normalised (one host per line) and its problems: a host names one application only."""
    hosts, errors = hosts_parsed(text)
    others = Application.objects.exclude(pk=application.pk if application else None).exclude(gateway_hosts="")
    taken = {host: other.name for other in others for host in other.gateway_hosts.split()}
    errors += [f"{host} is already a host name of {taken[host]}." for host in hosts if host in taken]
    return "\n".join(hosts), errors


def _gateway_validated(application: Application, changes: dict) -> dict:
    if changes.get("gateway_default", DENY) not in (DENY, ALLOW):
        raise ValidationFailed({"gateway_default": ["Choose deny or allow."]})
    if "gateway_hosts" in changes:
        hosts, errors = gateway_hosts_errors(changes["gateway_hosts"], application)
        if errors:
            raise ValidationFailed({"gateway_hosts": errors})
        changes = {**changes, "gateway_hosts": hosts}
    return changes


def _described(rules) -> list[str]:
    return [f"{rule.method} {rule.path} → {' '.join(rule.permissions) or 'any valid token'}" for rule in rules]


@transaction.atomic
def application_route_rules_set(
    *, application: Application, rules: list[dict], actor: User | None, ip: str | None = None
) -> list[RouteRule]:
    """Replace the application's gateway route rules with ``rules`` (each ``method``,
    ``path``, ``permissions``), in order; audited with the old and the new list."""
    require_application_admin(actor)
    if len(rules) > MAX_RULES:
        raise ValidationFailed({"rules": [f"At most {MAX_RULES} rules."]})
    for number, rule in enumerate(rules, start=1):
        errors = rule_errors(rule.get("method", ""), rule.get("path", ""), rule.get("permissions"))
        if errors:
            raise ValidationFailed({f"rule {number} {name}": messages for name, messages in errors.items()})
    application = Application.objects.select_for_update().get(pk=application.pk)
    old = list(application.route_rules.all())
    new = [
        RouteRule(
            application=application,
            position=position,
            method=rule["method"],
            path=rule["path"],
            permissions=list(rule["permissions"]),
        )
        for position, rule in enumerate(rules, start=1)
    ]
    if _described(old) == _described(new):
        return old
    application.route_rules.all().delete()
    saved = RouteRule.objects.bulk_create(new)
    # bulk_create sends no signal: tell every process's gateway cache by saving the application's row.
    application.save(update_fields=["gateway_default"])
    audit_record(
        action=AuditAction.APPLICATION_ROUTES_CHANGED,
        tenant_id=None,
        actor=actor,
        ip=ip,
        changes={"application": application.slug, "route_rules": [_described(old), _described(new)]},
    )
    return saved
