"""Reads of tokens that apply the rules: what a user or administrator may see."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import Case, CharField, Count, Exists, F, OuterRef, Q, QuerySet, Sum, Value, When
from django.utils import timezone

from iam.models import Role, RoleGrant, ServiceRole, User
from iam.selectors import user_is_main_administrator, user_service_roles
from tenants.models import Application, TenantApplication
from tokens.models import PersonalAccessToken, TokenStatus, TokenUsageDay
from tokens.rules import EffectiveStatus, TokenState, token_states


def inactive_condition() -> Q:
    """The SQL twin of ``tokens.rules.evaluate``'s INACTIVE reasons, for filters
    and counts over many tokens (tests check the two agree)."""
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
    """Annotate ``effective_status`` (active, expired, inactive, revoked, deleted) in SQL."""
    now = now or timezone.now()
    return tokens.annotate(
        effective_status=Case(
            When(status=TokenStatus.DELETED, then=Value(EffectiveStatus.DELETED)),
            When(status=TokenStatus.REVOKED, then=Value(EffectiveStatus.REVOKED)),
            When(expires_at__lte=now, then=Value(EffectiveStatus.EXPIRED)),
            When(inactive_condition(), then=Value(EffectiveStatus.INACTIVE)),
            default=Value(EffectiveStatus.ACTIVE),
            output_field=CharField(),
        )
    )


def tokens_visible_to_admin(user: User) -> QuerySet[PersonalAccessToken]:
    """Return the tokens an administrator may see: every token for a main
    administrator, their tenant's for a user administrator, none otherwise."""
    tokens = PersonalAccessToken.objects.all()
    if user_is_main_administrator(user):
        return tokens
    if ServiceRole.USER_ADMINISTRATOR in user_service_roles(user):
        return tokens.filter(tenant_id=user.tenant_id)
    return tokens.none()


@dataclass(frozen=True)
class TokenRow:
    token: PersonalAccessToken
    state: TokenState


def token_list_for_owner(owner: User) -> list[TokenRow]:
    """Return the owner's tokens that are not deleted, newest first, with their
    effective state. Revoked tokens stay listed (read-only) until deleted."""
    tokens = list(
        PersonalAccessToken.objects.filter(owner=owner)
        .exclude(status=TokenStatus.DELETED)
        .select_related("application", "revoked_by")
        .prefetch_related("roles")
        .order_by("-created_at", "-id")
    )
    states = token_states(tokens)
    return [TokenRow(token, states[token.pk]) for token in tokens]


def token_get_for_owner(owner: User, token_id: int) -> PersonalAccessToken | None:
    """Return one of the owner's tokens that is not deleted, or None; never another user's."""
    return (
        PersonalAccessToken.objects.filter(owner=owner, pk=token_id)
        .exclude(status=TokenStatus.DELETED)
        .select_related("application", "tenant", "revoked_by")
        .first()
    )


def roles_for_token(user: User, application: Application | None) -> QuerySet[Role]:
    """Return the PAT-eligible roles ``user`` holds in ``application`` (service roles when None)."""
    return (
        Role.objects.filter(application=application, pat_eligible=True, grants__user=user)
        .select_related("application")
        .order_by("name")
    )


def applications_for_token_creation(user: User) -> QuerySet[Application]:
    """Return the applications ``user`` can create a token for: PATs allowed in
    the user's tenant and at least one PAT-eligible role held there."""
    return Application.objects.filter(
        Exists(
            TenantApplication.objects.filter(application=OuterRef("pk"), tenant_id=user.tenant_id, allows_pats=True)
        ),
        Exists(RoleGrant.objects.filter(role__application=OuterRef("pk"), role__pat_eligible=True, user=user)),
    ).order_by("name")


def user_administrators_of(user: User) -> list[User]:
    """Return who can give ``user`` the right to create tokens: the user
    administrators of the user's tenant (or, failing those, the main administrators)."""
    admins = list(
        User.objects.filter(
            tenant_id=user.tenant_id,
            is_active=True,
            role_grants__role__code=ServiceRole.USER_ADMINISTRATOR,
            role_grants__role__application__isnull=True,
        ).order_by("username")
    )
    if admins:
        return admins
    return list(
        User.objects.filter(
            is_active=True,
            role_grants__role__code=ServiceRole.MAIN_ADMINISTRATOR,
            role_grants__role__application__isnull=True,
        ).order_by("username")
    )


@dataclass(frozen=True)
class DashboardFigures:
    by_status: list[tuple[str, int]]
    expiring: list[tuple[str, int]]
    use_per_day: list[tuple[date, int]]
    top_applications: list[tuple[str, int]]


def dashboard_figures(user: User, now: datetime | None = None) -> DashboardFigures:
    """Return the dashboard's figures over the tokens ``user`` may see."""
    now = now or timezone.now()
    tokens = tokens_visible_to_admin(user)
    counted = dict(
        with_effective_status(tokens, now).order_by().values_list("effective_status").annotate(n=Count("id"))
    )
    statuses = [
        EffectiveStatus.ACTIVE,
        EffectiveStatus.EXPIRED,
        EffectiveStatus.INACTIVE,
        EffectiveStatus.REVOKED,
        EffectiveStatus.DELETED,
    ]
    live = tokens.filter(status=TokenStatus.ACTIVE, expires_at__gt=now)
    expiring = [
        (f"next {days} days", live.filter(expires_at__lte=now + timedelta(days=days)).count()) for days in (7, 30)
    ]
    first_day = now.date() - timedelta(days=29)
    used = dict(
        TokenUsageDay.objects.filter(token__in=tokens, day__gte=first_day)
        .order_by()
        .values_list("day")
        .annotate(total=Sum("count"))
    )
    use_per_day = [(first_day + timedelta(days=i), used.get(first_day + timedelta(days=i), 0)) for i in range(30)]
    top = list(
        live.filter(application__isnull=False)
        .order_by()
        .values_list("application__name")
        .annotate(n=Count("id"))
        .order_by("-n", "application__name")[:5]
    )
    return DashboardFigures(
        by_status=[(status, counted.get(status, 0)) for status in statuses],
        expiring=expiring,
        use_per_day=use_per_day,
        top_applications=top,
    )
