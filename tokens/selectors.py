"""Reads of tokens that apply the rules: what a user or administrator may see."""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import Case, CharField, Count, Exists, F, OuterRef, Q, QuerySet, Sum, Value, When
from django.utils import timezone

from iam.models import Role, RoleGrant, ServiceRole, User
from iam.selectors import roles_held_for_tokens, user_is_main_administrator, users_holding_service_role, visible_to
from tenants.models import Application, Tenant, TenantApplication
from tokens.models import Approval, PersonalAccessToken, RotatedSecret, TenantTokenFigures, TokenStatus, TokenUsageDay
from tokens.rules import EffectiveStatus, TokenState, token_states


def inactive_condition() -> Q:
    """The SQL twin of ``tokens.rules.evaluate``'s INACTIVE reasons, with which
    the hourly reconciliation checks ``marked_inactive`` (tests check the two agree)."""
    links = PersonalAccessToken.roles.through.objects.filter(personalaccesstoken_id=OuterRef("pk"))
    held = RoleGrant.objects.filter(user_id=OuterRef(OuterRef("owner_id")), role_id=OuterRef("role_id"))
    switch_on = TenantApplication.objects.filter(
        tenant_id=OuterRef("tenant_id"), application_id=OuterRef("application_id"), allows_pats=True
    )
    return (
        Q(owner__is_active=False)
        | Q(owner__can_create_pats=False)
        | ~Q(owner__tenant_id=F("tenant_id"))
        | (Q(application__isnull=False) & ~Exists(switch_on))
        | ~Exists(links)
        | Exists(links.filter(Q(role__pat_eligible=False) | ~Exists(held)))
    )


def with_effective_status(tokens: QuerySet[PersonalAccessToken], now: datetime | None = None) -> QuerySet:
    """Annotate ``effective_status`` (active, expired, inactive, revoked, deleted)
    in SQL, for counts over many tokens. INACTIVE comes from ``marked_inactive``
    (see ``with_status``); a token's own state is ``tokens.rules.token_state``."""
    now = now or timezone.now()
    return tokens.annotate(
        effective_status=Case(
            When(status=TokenStatus.DELETED, then=Value(EffectiveStatus.DELETED)),
            When(status=TokenStatus.REVOKED, then=Value(EffectiveStatus.REVOKED)),
            When(approval=Approval.DENIED, then=Value(EffectiveStatus.DENIED)),
            When(expires_at__lte=now, then=Value(EffectiveStatus.EXPIRED)),
            When(approval=Approval.PENDING, then=Value(EffectiveStatus.PENDING)),
            When(marked_inactive=True, then=Value(EffectiveStatus.INACTIVE)),
            default=Value(EffectiveStatus.ACTIVE),
            output_field=CharField(),
        )
    )


def with_status(tokens: QuerySet[PersonalAccessToken], status: str, now: datetime | None = None) -> QuerySet:
    """Narrow ``tokens`` to one effective status with conditions an index serves.

    Whether a live token is INACTIVE is read from ``marked_inactive``, which
    every service that changes a token's validity sets in the same
    transaction, and which ``tokens.maintenance.inactive_marks_reconcile``
    checks against the rules every hour (a change that bypassed the services
    shows in these lists after it; each row's own status is always computed
    from the rules). Evaluating the rules' SQL twin here instead costs a
    correlated lookup per row, which the planner misjudges at a million tokens.
    """
    now = now or timezone.now()
    if status in (EffectiveStatus.DELETED, EffectiveStatus.REVOKED):
        return tokens.filter(status=status)
    live = tokens.filter(status=TokenStatus.ACTIVE)
    if status == EffectiveStatus.DENIED:
        return live.filter(approval=Approval.DENIED)
    live = live.exclude(approval=Approval.DENIED)
    if status == EffectiveStatus.EXPIRED:
        return live.filter(expires_at__lte=now)
    live = live.filter(expires_at__gt=now)
    if status == EffectiveStatus.PENDING:
        return live.filter(approval=Approval.PENDING)
    live = live.exclude(approval=Approval.PENDING)
    if status == EffectiveStatus.INACTIVE:
        return live.filter(marked_inactive=True)
    if status == EffectiveStatus.ACTIVE:
        return live.filter(marked_inactive=False)
    return tokens.none()


def token_approvers(tenant_id: int) -> QuerySet[User]:
    """Who decides on the tenant's approval requests: its active user
    administrators, or, where it has none, the main administrators."""
    admins = users_holding_service_role(ServiceRole.USER_ADMINISTRATOR).filter(tenant_id=tenant_id, is_active=True)
    if not admins.exists():
        admins = users_holding_service_role(ServiceRole.MAIN_ADMINISTRATOR).filter(is_active=True)
    return admins.distinct().order_by("username")


def approver_names(token: PersonalAccessToken) -> list[str]:
    """The people who may approve ``token``, as its owner reads them (never the owner)."""
    approvers = token_approvers(token.tenant_id).exclude(pk=token.owner_id)
    return [user.get_full_name() or user.username for user in approvers]


def tokens_visible_to_admin(user: User) -> QuerySet[PersonalAccessToken]:
    """Return the tokens an administrator may see (``visible_to``)."""
    return visible_to(user, PersonalAccessToken.objects.all())


@dataclass(frozen=True)
class TokenRow:
    token: PersonalAccessToken
    state: TokenState


TOKENS_PER_PAGE = 25


def token_page_for_owner(owner: User, page_number: object = 1) -> tuple[Page, list[TokenRow]]:
    """Return one page of the owner's tokens that are not deleted, newest
    first, with their effective state (computed for that page only). Revoked
    tokens stay listed (read-only) until deleted. A page number out of range
    gives the nearest page."""
    tokens = (
        PersonalAccessToken.objects.filter(owner=owner)
        .exclude(status=TokenStatus.DELETED)
        .select_related("application", "tenant", "revoked_by")
        .prefetch_related("roles")
        .order_by("-created_at", "-id")
    )
    page = Paginator(tokens, TOKENS_PER_PAGE).get_page(page_number)
    page_tokens = list(page.object_list)
    states = token_states(page_tokens)
    return page, [TokenRow(token, states[token.pk]) for token in page_tokens]


# Tokens that cannot be used again as they are: the list folds them away.
ENDED_STATUSES = frozenset({EffectiveStatus.REVOKED, EffectiveStatus.EXPIRED, EffectiveStatus.DENIED})


def rows_split_ended(rows: list[TokenRow]) -> tuple[list[TokenRow], list[TokenRow]]:
    """Return ``rows`` as (current, ended): ended ones are revoked, expired or denied."""
    current = [row for row in rows if row.state.status not in ENDED_STATUSES]
    ended = [row for row in rows if row.state.status in ENDED_STATUSES]
    return current, ended


def revoked_tokens_of(owner: User) -> QuerySet[PersonalAccessToken]:
    """Return the owner's revoked tokens (not yet deleted), newest first."""
    return PersonalAccessToken.objects.filter(owner=owner, status=TokenStatus.REVOKED).order_by("-created_at", "-id")


def token_get_for_owner(owner: User, token_id: int) -> PersonalAccessToken | None:
    """Return one of the owner's tokens that is not deleted, or None; never another user's."""
    return (
        PersonalAccessToken.objects.filter(owner=owner, pk=token_id)
        .exclude(status=TokenStatus.DELETED)
        .select_related("application", "tenant", "revoked_by")
        .first()
    )


def token_name_taken(owner: User, name: str, exclude_id: int | None = None) -> bool:
    """Return whether ``owner`` has a token (of any kind, not deleted) named
    ``name``, other than ``exclude_id``: names are unique per owner."""
    tokens = PersonalAccessToken.objects.filter(owner=owner, name=name).exclude(status=TokenStatus.DELETED)
    if exclude_id is not None:
        tokens = tokens.exclude(pk=exclude_id)
    return tokens.exists()


def previous_secret_in_grace(token: PersonalAccessToken, now: datetime | None = None) -> RotatedSecret | None:
    """The replaced secret that still works, if the token was regenerated with a grace period."""
    return token.rotated_secrets.filter(works_until__gt=now or timezone.now()).order_by("-works_until").first()


def roles_for_token(user: User, application: Application | None) -> QuerySet[Role]:
    """Return the PAT-eligible roles ``user`` holds in ``application`` (service roles when None)."""
    return roles_held_for_tokens(user).filter(application=application).select_related("application").order_by("name")


def applications_for_token_creation(user: User) -> QuerySet[Application]:
    """Return the applications ``user`` can create a token for: PATs allowed in
    the user's tenant and at least one PAT-eligible role held there."""
    return Application.objects.filter(
        Exists(
            TenantApplication.objects.filter(application=OuterRef("pk"), tenant_id=user.tenant_id, allows_pats=True)
        ),
        Exists(roles_held_for_tokens(user).filter(application=OuterRef("pk"))),
    ).order_by("name")


def applications_with_pats_switched_off(user: User) -> QuerySet[Application]:
    """Return the applications in which ``user`` holds a PAT-eligible role but
    whose personal access tokens are switched off in the user's tenant (so the
    create page can say why they are missing)."""
    return (
        Application.objects.filter(Exists(roles_held_for_tokens(user).filter(application=OuterRef("pk"))))
        .exclude(
            Exists(
                TenantApplication.objects.filter(application=OuterRef("pk"), tenant_id=user.tenant_id, allows_pats=True)
            )
        )
        .order_by("name")
    )


def user_administrators_of(user: User) -> list[User]:
    """Return who can give ``user`` the right to create tokens: the user
    administrators of the user's tenant (or, failing those, the main administrators)."""
    user_admins = users_holding_service_role(ServiceRole.USER_ADMINISTRATOR).filter(tenant_id=user.tenant_id)
    main_admins = users_holding_service_role(ServiceRole.MAIN_ADMINISTRATOR)
    return list(user_admins.filter(is_active=True).order_by("username")) or list(
        main_admins.filter(is_active=True).order_by("username")
    )


EXPIRING_DAYS = (7, 30)
USE_DAYS = 30


@dataclass(frozen=True)
class DashboardFigures:
    by_status: list[tuple[str, int]]
    expiring: list[tuple[str, int]]
    use_per_day: list[tuple[date, int]]
    top_applications: list[tuple[str, int]]
    computed_at: datetime | None = None  # None: computed for this request


def _empty_tenant_figures() -> dict:
    return {"by_status": {}, "expiring": {str(days): 0 for days in EXPIRING_DAYS}, "use": {}, "applications": {}}


def tenant_figures(
    tokens: QuerySet[PersonalAccessToken], now: datetime, tenant_ids: Iterable[int] = ()
) -> dict[int, dict]:
    """The dashboard's figures of ``tokens``, per tenant (and for each of
    ``tenant_ids`` even without tokens), as JSON-ready dicts: what
    ``TenantTokenFigures`` stores. A handful of GROUP BY queries."""
    figures: dict[int, dict] = {tenant_id: _empty_tenant_figures() for tenant_id in tenant_ids}

    def of(tenant_id: int) -> dict:
        return figures.setdefault(tenant_id, _empty_tenant_figures())

    by_status = with_effective_status(tokens, now).order_by().values_list("tenant_id", "effective_status")
    for tenant_id, status, count in by_status.annotate(n=Count("id")):
        of(tenant_id)["by_status"][status] = count
    live = tokens.filter(status=TokenStatus.ACTIVE, expires_at__gt=now)
    horizon = {str(days): Count("id", filter=Q(expires_at__lte=now + timedelta(days=days))) for days in EXPIRING_DAYS}
    expiring = live.filter(expires_at__lte=now + timedelta(days=max(EXPIRING_DAYS))).order_by().values("tenant_id")
    for row in expiring.annotate(**horizon):
        of(row["tenant_id"])["expiring"] = {str(days): row[str(days)] for days in EXPIRING_DAYS}
    used = (
        TokenUsageDay.objects.filter(token__in=tokens, day__gt=now.date() - timedelta(days=USE_DAYS))
        .order_by()
        .values_list("token__tenant_id", "day")
        .annotate(total=Sum("count"))
    )
    for tenant_id, day, total in used:
        of(tenant_id)["use"][day.isoformat()] = total
    per_application = live.filter(application__isnull=False).order_by().values_list("tenant_id", "application__name")
    for tenant_id, name, count in per_application.annotate(n=Count("id")):
        of(tenant_id)["applications"][name] = count
    return figures


def _merged(per_tenant: list[dict], now: datetime, computed_at: datetime | None) -> DashboardFigures:
    status_counts: Counter[str] = Counter()
    expiring: Counter[str] = Counter()
    use: Counter[str] = Counter()
    applications: Counter[str] = Counter()
    for figures in per_tenant:
        status_counts.update(figures["by_status"])
        expiring.update(figures["expiring"])
        use.update(figures["use"])
        applications.update(figures["applications"])
    first_day = now.date() - timedelta(days=USE_DAYS - 1)
    days = [first_day + timedelta(days=i) for i in range(USE_DAYS)]
    return DashboardFigures(
        by_status=[(status, status_counts[status]) for status in EffectiveStatus],
        expiring=[(f"next {days} days", expiring[str(days)]) for days in EXPIRING_DAYS],
        use_per_day=[(day, use[day.isoformat()]) for day in days],
        top_applications=sorted(applications.items(), key=lambda item: (-item[1], item[0]))[:5],
        computed_at=computed_at,
    )


def dashboard_figures(user: User, now: datetime | None = None) -> DashboardFigures:
    """Return the dashboard's figures over the tokens ``user`` may see.

    Computed for the request while those tokens are fewer than
    ``DASHBOARD_LIVE_LIMIT``; above, read from the per-tenant figures that
    ``dashboard_figures_refresh`` stores, so the page costs a row per tenant
    however many tokens there are (tenants not stored yet are computed).
    """
    now = now or timezone.now()
    tokens = tokens_visible_to_admin(user)
    if user_is_main_administrator(user):
        stored = TenantTokenFigures.objects.all()
        tenant_ids = set(Tenant.objects.values_list("pk", flat=True))
    elif tokens.query.is_empty():
        return _merged([], now, None)
    else:
        stored = TenantTokenFigures.objects.filter(tenant_id=user.tenant_id)
        tenant_ids = {user.tenant_id}
    stored = list(stored)
    if sum(row.tokens for row in stored) < settings.DASHBOARD_LIVE_LIMIT:
        return _merged(list(tenant_figures(tokens, now).values()), now, None)
    missing = tenant_ids - {row.tenant_id for row in stored}
    fresh = tenant_figures(tokens.filter(tenant_id__in=missing), now) if missing else {}
    computed_at = min(row.computed_at for row in stored)
    return _merged([row.figures for row in stored] + list(fresh.values()), now, computed_at)
