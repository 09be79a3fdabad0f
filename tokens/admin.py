"""The console's token pages: Analysis > Personal access tokens, integration
credentials and OAuth clients (the dashboard is ``tokens.dashboard``).

Administrators never create or edit tokens (Thinkwise): the overview is
read-only; its one action is revocation, irreversible, behind a confirmation.
"""

from collections import Counter
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import pluralize
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from core.admin import (
    APPLICATION_ADMIN_KINDS,
    TOKEN_VIEWER_KINDS,
    AdminKindMixin,
    CappedCountPaginator,
    IndexedSearchMixin,
    LargeTableChangeList,
    OneTimeSecretMixin,
    ReadOnlyAdmin,
    TenantListFilter,
    database_id,
)
from core.errors import DomainError
from core.http import client_ip
from core.text import counted, whitespace_collapsed
from iam.admin import user_page_section_register
from iam.admin_site import audit_history_redirect
from iam.models import User
from iam.selectors import tenants_visible_to, user_is_main_administrator, visible_to
from tenants.models import Application
from tokens.credentials import (
    credential_name_taken,
    credential_name_taken_message,
    integration_credential_create,
    integration_credential_revoke,
)
from tokens.dashboard import dashboard_view
from tokens.models import (
    IntegrationCredential,
    OAuthClient,
    PersonalAccessToken,
    RevocationCause,
    TokenKind,
    TokenStatus,
)
from tokens.oauth import oauth_client_create, oauth_client_name_taken, oauth_client_revoke
from tokens.rules import EffectiveStatus, evaluate, load_facts, token_state, token_states
from tokens.selectors import tokens_visible_to_admin, with_status
from tokens.services import token_approval_decide, tokens_revoke_by_administrator

BULK_REVOKE_MAX = 1000


def _when(moment):
    """A list's time as the date over the time, so the column stays narrow."""
    local = timezone.localtime(moment)
    return format_html('{}<br><small class="quiet">{}</small>', f"{local:%Y-%m-%d}", f"{local:%H:%M}")


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return EffectiveStatus.choices

    def queryset(self, request, queryset):
        if self.value() in EffectiveStatus.values:
            return with_status(queryset, self.value())
        return queryset


class OwnerFilter(admin.SimpleListFilter):
    """One user's tokens: what their user page links to. Shown (with "All" to
    leave it) only while it is applied; an owner the viewer may not see is a 404."""

    title = "owner"
    parameter_name = "owner"

    def lookups(self, request, model_admin):
        if self.value() is None:
            return []
        pk = database_id(self.value())
        owner = visible_to(request.user, User.objects.filter(pk=pk)).first() if pk is not None else None
        if owner is None:
            raise Http404("No such user.")
        return [(self.value(), owner.username)]

    def queryset(self, request, queryset):
        return queryset.filter(owner_id=int(self.value())) if self.value() is not None else queryset


def user_tokens_section(viewer: User, user: User):
    """On a user's page: the tokens they own that the viewer may see (a user
    moved to another tenant left theirs in the old one), by effective status as
    the overview shows them, linking to them there."""
    tokens = list(tokens_visible_to_admin(viewer).filter(owner=user).order_by("-id")[: USER_PAGE_TOKENS + 1])
    if not tokens:
        return "No tokens."
    counts = Counter(state.status for state in token_states(tokens).values())
    url = reverse("admin:tokens_personalaccesstoken_changelist") + f"?owner={user.pk}"
    total = counted(len(tokens), "token") if len(tokens) <= USER_PAGE_TOKENS else f"More than {USER_PAGE_TOKENS} tokens"
    parts = ", ".join(f"{n} {EffectiveStatus(status).label.lower()}" for status, n in sorted(counts.items()))
    return format_html('<a href="{}">{}</a> ({})', url, total, parts)


USER_PAGE_TOKENS = 1000  # counted on the page; beyond, the overview counts them
user_page_section_register(user_tokens_section)


class ApplicationFilter(admin.SimpleListFilter):
    """The applications of the administrator's tenant (every one for a main
    administrator): another tenant's applications are not even named."""

    title = "application"
    parameter_name = "application__id__exact"

    def lookups(self, request, model_admin):
        applications = Application.objects.order_by("name")
        if not user_is_main_administrator(request.user):
            applications = applications.filter(tenant_links__tenant_id=request.user.tenant_id)
        return [(str(application.pk), application.name) for application in applications]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        if self.value() not in {key for key, _ in self.lookup_choices}:
            return queryset.none()
        return queryset.filter(application_id=self.value())


class ExpiringFilter(admin.SimpleListFilter):
    title = "expiring"
    parameter_name = "expiring"

    def lookups(self, request, model_admin):
        return [("7", "within 7 days"), ("30", "within 30 days")]

    def queryset(self, request, queryset):
        if self.value() in ("7", "30"):
            now = timezone.now()
            return queryset.filter(
                status=TokenStatus.ACTIVE, expires_at__gt=now, expires_at__lte=now + timedelta(days=int(self.value()))
            )
        return queryset


class UseFilter(admin.SimpleListFilter):
    title = "use"
    parameter_name = "use"

    def lookups(self, request, model_admin):
        return [("never", "never used"), ("stale", "not used for 90 days")]

    def queryset(self, request, queryset):
        cutoff = timezone.now() - timedelta(days=90)
        if self.value() == "never":
            return queryset.filter(last_used_at__isnull=True)
        if self.value() == "stale":
            return queryset.filter(last_used_at__lt=cutoff) | queryset.filter(
                last_used_at__isnull=True, created_at__lt=cutoff
            )
        return queryset


class KindFilter(admin.SimpleListFilter):
    title = "kind"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return [
            ("personal", "personal (an application's)"),
            ("administrative", "administrative"),
            ("embed", "embedding"),
        ]

    def queryset(self, request, queryset):
        if self.value() == "personal":
            return queryset.filter(kind=TokenKind.PERSONAL, application__isnull=False)
        if self.value() == "administrative":
            return queryset.filter(application__isnull=True)
        if self.value() == "embed":
            return queryset.filter(kind=TokenKind.EMBED)
        return queryset


class RevocationCauseFilter(admin.SimpleListFilter):
    title = "revoked because"
    parameter_name = "revoked_because"

    def lookups(self, request, model_admin):
        return RevocationCause.choices

    def queryset(self, request, queryset):
        if self.value() in RevocationCause.values:
            return queryset.filter(status=TokenStatus.REVOKED, revocation_cause=self.value())
        return queryset


class TokenChangeList(LargeTableChangeList):
    def get_results(self, request):
        """Give the page's tokens their effective status from the rules, in a
        fixed number of queries (``load_facts``), rather than an SQL twin of
        the rules evaluated in the page's query; the facts' roles name the
        permissions too, so they are not read twice."""
        super().get_results(request)
        self.result_list = list(self.result_list)
        now = timezone.now()
        facts_of = load_facts(self.result_list)
        for token in self.result_list:
            token.effective_state = evaluate(facts_of[token.pk], now)
            token.permission_names = [role.name for role in facts_of[token.pk].roles]


@admin.register(PersonalAccessToken)
class PersonalAccessTokenAdmin(IndexedSearchMixin, ReadOnlyAdmin):
    view_kinds = TOKEN_VIEWER_KINDS
    # What fits beside the menu and the filters at 1280 px; the rest (created, the
    # last address, the networks) is on the token's page.
    list_display = ["token_name", "owner", "application_and_permissions", "status_badge", "expires", "last_used"]
    list_filter = [
        OwnerFilter,
        StatusFilter,
        RevocationCauseFilter,
        KindFilter,
        ("tenant", TenantListFilter),
        ApplicationFilter,
        ExpiringFilter,
        UseFilter,
    ]
    search_fields = ["owner", "name", "display_prefix", "purpose"]  # prefixes of each; see search_kinds
    list_select_related = ["owner", "tenant", "application"]
    ordering = ["-created_at", "-id"]
    # Only what an index orders (tenant and application are filters instead).
    sortable_by = ["token_name", "expires", "last_used", "owner", "owner_and_tenant"]
    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # facet counts are a COUNT per filter choice over the whole table
    list_per_page = 25  # rendering a row costs more than finding it: 25 a page keep it under 100 ms
    actions = ["revoke_selected", "approve_selected", "deny_selected"]
    fields = [
        "name",
        "purpose",
        "kind_label",
        "owner",
        "tenant",
        "application_name",
        "permission_list",
        "status_badge",
        "why",
        "approval_text",
        "display_prefix",
        "created_at",
        "expires_at",
        "last_used_at",
        "last_used_ip",
        "allowed_networks",
        "last_refused_ip",
        "last_refused_at",
        "revoked_at",
        "revoked_by_who",
        "revocation_reason",
        "deleted_at",
    ]
    readonly_fields = fields
    change_form_template = "admin/tokens/personalaccesstoken/change_form.html"

    def get_queryset(self, request):
        return tokens_visible_to_admin(request.user)

    def history_view(self, request, object_id, extra_context=None):
        return audit_history_redirect(self, request, object_id, "token")

    def get_changelist(self, request, **kwargs):
        return TokenChangeList

    def search_kinds(self, request, term, limit):
        """Tokens whose name or display prefix starts with the term, or whose
        owner's username or email does (an owner of the administrator's tenant,
        for a user administrator)."""
        users = visible_to(request.user, User.objects.all())
        owners = self.matching_ids(request, self.users_starting_with(term, users), limit, "owners")
        return [
            Q(name__startswith=term),
            Q(display_prefix__startswith=term),
            Q(purpose__startswith=term),
            Q(owner_id__in=owners),
        ]

    def get_list_filter(self, request):
        if user_is_main_administrator(request.user):
            return self.list_filter
        return [f for f in self.list_filter if f != ("tenant", TenantListFilter)]

    def get_list_display(self, request):
        # Only a main administrator sees more than one tenant.
        if user_is_main_administrator(request.user):
            return [name if name != "owner" else "owner_and_tenant" for name in self.list_display]
        return self.list_display

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description="application")
    def application_name(self, token: PersonalAccessToken) -> str:
        return token.application.name if token.application else "(administrative)"

    @admin.display(description="owner", ordering="owner")
    def owner_and_tenant(self, token: PersonalAccessToken):
        return format_html('{}<br><small class="quiet">{}</small>', token.owner, token.tenant)

    @admin.display(description="application and permissions")
    def application_and_permissions(self, token: PersonalAccessToken):
        return format_html(
            '{}<br><small class="token-permissions">{}</small>',
            self.application_name(token),
            self.permission_list(token),
        )

    @admin.display(description="permissions")
    def permission_list(self, token: PersonalAccessToken) -> str:
        names = getattr(token, "permission_names", None)  # set for a list page by TokenChangeList
        return ", ".join(names if names is not None else (role.name for role in token.roles.all()))

    @admin.display(description="name", ordering="name")
    def token_name(self, token: PersonalAccessToken):
        """The name with the display prefix and purpose, and the kind when it is not an application's personal token."""
        kind = ""
        if token.kind == TokenKind.EMBED:
            kind = mark_safe(' <span class="token-kind">embedding</span>')
        elif token.application_id is None:
            kind = mark_safe(' <span class="token-kind">administrative</span>')
        purpose = format_html('<br><span class="token-purpose">{}</span>', token.purpose) if token.purpose else ""
        return format_html("{}{}<br><code>{}…</code>{}", token.name, kind, token.display_prefix, purpose)

    @admin.display(description="kind")
    def kind_label(self, token: PersonalAccessToken) -> str:
        if token.kind == TokenKind.EMBED:
            return "Embedding (issued by an integration; its owner cannot edit it)"
        return "Administrative (this service's API)" if token.application_id is None else "Personal"

    def _state(self, token: PersonalAccessToken):
        state = getattr(token, "effective_state", None)  # set for a list page by TokenChangeList
        if state is None:
            state = token.effective_state = token_state(token)
        return state

    # No ordering: sorting a whole tenant (or every tenant) by a status computed
    # per row cannot use an index (11 s at a million tokens); filter by it instead.
    @admin.display(description="status")
    def status_badge(self, token: PersonalAccessToken):
        """The status, and under it why a token is not active: the cause of a
        revocation or the first reason it is inactive (all of them on hover)."""
        state = self._state(token)
        why, detail = "", ""
        if state.status == EffectiveStatus.REVOKED:
            why = token.get_revocation_cause_display()
            detail = token.revocation_reason
        elif state.status == EffectiveStatus.INACTIVE:
            why, detail = state.inactive_reasons[0].message, state.reason_text
        elif state.status == EffectiveStatus.DENIED:
            why, detail = f"Denied by {token.approval_decided_by_label}", token.approval_note
        badge = format_html('<span class="token-status token-status-{}">{}</span>', state.status, state.status)
        if not why:
            return badge
        return format_html('{}<br><small class="token-why" title="{}">{}</small>', badge, detail or why, why)

    @admin.display(description="why it cannot be used")
    def why(self, token: PersonalAccessToken) -> str:
        state = self._state(token)
        if state.status == EffectiveStatus.REVOKED:
            text = f"{token.get_revocation_cause_display()} ({token.revoked_by_name or 'unknown'})"
            return f"{text}: {token.revocation_reason}" if token.revocation_reason else text
        if state.status == EffectiveStatus.INACTIVE:
            return state.reason_text
        if state.status == EffectiveStatus.EXPIRED:
            return "It has expired."
        if state.status == EffectiveStatus.DELETED:
            return "Its owner deleted it."
        if state.status == EffectiveStatus.PENDING:
            return "It awaits a user administrator's approval."
        if state.status == EffectiveStatus.DENIED:
            return f"Denied by {token.approval_decided_by_label}: {token.approval_note}"
        return "-"

    @admin.display(description="approval")
    def approval_text(self, token: PersonalAccessToken) -> str:
        if not token.approval:
            return "Not needed"
        asked = f"asked {timezone.localtime(token.approval_requested_at):%Y-%m-%d %H:%M}"
        if not token.approval_decided_at:
            return f"{token.get_approval_display()} ({asked})"
        decided = f"{token.get_approval_display()} by {token.approval_decided_by_label or 'an administrator'} on "
        decided += f"{timezone.localtime(token.approval_decided_at):%Y-%m-%d %H:%M}"
        return f"{decided}: {token.approval_note}" if token.approval_note else decided

    @admin.display(description="revoked by")
    def revoked_by_who(self, token: PersonalAccessToken) -> str:
        return token.revoked_by_name or "-"

    # The list's times are formatted by hand (_when): Django's localized date
    # format costs a tenth of a millisecond a cell.
    @admin.display(description="expires", ordering="expires_at")
    def expires(self, token: PersonalAccessToken):
        return _when(token.expires_at)

    @admin.display(description="last used", ordering="last_used_at")
    def last_used(self, token: PersonalAccessToken):
        if token.last_used_at is None:
            return "never"
        return format_html(
            '{}<br><small class="quiet">from {}</small>', _when(token.last_used_at), token.last_used_ip or "?"
        )

    # ------------------------------------------------------------ revocation

    def get_urls(self):
        return [
            path(
                "<int:token_id>/revoke/",
                self.admin_site.admin_view(self.revoke_view),
                name="tokens_personalaccesstoken_revoke",
            ),
            path(
                "<int:token_id>/decide/",
                self.admin_site.admin_view(self.decide_view),
                name="tokens_personalaccesstoken_decide",
            ),
            *super().get_urls(),
        ]

    def _revoke(self, request: HttpRequest, tokens: list[PersonalAccessToken]) -> int:
        revoked, refused = tokens_revoke_by_administrator(
            tokens=tokens, actor=request.user, ip=client_ip(request), reason=request.POST.get("reason", "")
        )
        for token, error in refused:
            messages.error(request, f"{token.name}: {error.message}")
        return len(revoked)

    def _confirmation(self, request: HttpRequest, tokens: list[PersonalAccessToken], **extra) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Revoke personal access tokens",
            "tokens": tokens,
            "opts": self.model._meta,
            **extra,
        }
        return TemplateResponse(request, "admin/tokens/revoke_confirmation.html", context)

    def revoke_view(self, request: HttpRequest, token_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        token = self.get_queryset(request).filter(pk=token_id).first()
        if token is None:
            raise Http404("No such token.")
        if request.method == "POST":
            if self._revoke(request, [token]):
                messages.success(request, f"Token “{token.name}” revoked. Its owner has been told.")
            return HttpResponseRedirect(reverse("admin:tokens_personalaccesstoken_change", args=[token.pk]))
        return self._confirmation(request, [token], single=True)

    @admin.action(description="Revoke selected personal access tokens")
    def revoke_selected(self, request: HttpRequest, queryset):
        if request.POST.get("select_across") == "1" and self.search_was_capped(request, queryset):
            messages.error(
                request,
                f"This search matches more than {self.search_list_cap} tokens and lists only the newest: "
                "narrow it before revoking all of them.",
            )
            return None
        revocable = queryset.exclude(status__in=[TokenStatus.REVOKED, TokenStatus.DELETED])
        if revocable.order_by().values("pk")[: BULK_REVOKE_MAX + 1].count() > BULK_REVOKE_MAX:
            messages.error(
                request, f"Select at most {BULK_REVOKE_MAX:,} tokens to revoke at once: narrow the list with a filter."
            )
            return None
        tokens = list(revocable)
        if request.POST.get("post") == "yes":
            count = self._revoke(request, tokens)
            messages.success(
                request,
                f"{counted(count, 'token')} revoked. {'Its owner has' if count == 1 else 'Their owners have'} "
                "been told.",
            )
            return None
        if not tokens:
            messages.info(request, "None of the selected tokens can be revoked: they are revoked or deleted already.")
            return None
        return self._confirmation(request, tokens, bulk=True)

    # ------------------------------------------------------------ approval

    def _decide(self, request: HttpRequest, tokens: list[PersonalAccessToken], approve: bool) -> int:
        decided = 0
        for token in tokens:
            try:
                token_approval_decide(
                    token=token,
                    actor=request.user,
                    approve=approve,
                    note=request.POST.get("note", ""),
                    ip=client_ip(request),
                )
            except DomainError as error:
                messages.error(request, f"{token.name}: {error.message}")
            else:
                decided += 1
        return decided

    def _decision_page(self, request, tokens, approve: bool, error: str = "", **extra) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": f"{'Approve' if approve else 'Deny'} personal access tokens",
            "tokens": tokens,
            "approve": approve,
            "error": error,
            "note": request.POST.get("note", ""),
            "opts": self.model._meta,
            **extra,
        }
        return TemplateResponse(
            request, "admin/tokens/approval_confirmation.html", context, status=400 if error else 200
        )

    def _decided_message(self, request, count: int, approve: bool) -> None:
        if count:
            verb = "approved: they work from now on" if approve else "denied"
            if count == 1:
                verb = "approved: it works from now on" if approve else "denied"
            messages.success(request, f"{count} token{pluralize(count)} {verb}. Their owners have been told.")

    def _decision(self, request, tokens, approve: bool, **extra):
        """The confirmation page, or the decision once confirmed (a denial needs its reason)."""
        if request.POST.get("post") != "yes":
            return self._decision_page(request, tokens, approve, **extra)
        if not approve and not whitespace_collapsed(request.POST.get("note", "")):
            return self._decision_page(request, tokens, approve, "Say why: the owners are told.", **extra)
        self._decided_message(request, self._decide(request, tokens, approve), approve)
        return None

    def decide_view(self, request: HttpRequest, token_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        token = self.get_queryset(request).filter(pk=token_id).first()
        if token is None:
            raise Http404("No such token.")
        approve = request.GET.get("decision", request.POST.get("decision")) != "deny"
        if request.method == "POST":
            response = self._decision(request, [token], approve, single=True)
            if response is not None:
                return response
            return HttpResponseRedirect(reverse("admin:tokens_personalaccesstoken_change", args=[token.pk]))
        return self._decision_page(request, [token], approve, single=True)

    def _pending_selection(self, request, queryset) -> list[PersonalAccessToken] | None:
        pending = with_status(queryset, EffectiveStatus.PENDING)
        if pending.order_by().values("pk")[: BULK_REVOKE_MAX + 1].count() > BULK_REVOKE_MAX:
            messages.error(
                request, f"Select at most {BULK_REVOKE_MAX:,} tokens at once: narrow the list with a filter."
            )
            return None
        tokens = list(pending.select_related("owner", "tenant"))
        if not tokens:
            messages.info(request, "None of the selected tokens awaits approval.")
            return None
        return tokens

    @admin.action(description="Approve selected tokens awaiting approval")
    def approve_selected(self, request: HttpRequest, queryset):
        tokens = self._pending_selection(request, queryset)
        return None if tokens is None else self._decision(request, tokens, True, bulk=True)

    @admin.action(description="Deny selected tokens awaiting approval")
    def deny_selected(self, request: HttpRequest, queryset):
        tokens = self._pending_selection(request, queryset)
        return None if tokens is None else self._decision(request, tokens, False, bulk=True)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        token = self.get_queryset(request).filter(pk=object_id).first() if str(object_id).isdigit() else None
        pending = token is not None and token_state(token).status == EffectiveStatus.PENDING
        extra_context = {**(extra_context or {}), "can_revoke": True, "can_decide": pending}
        return super().change_view(request, object_id, form_url, extra_context)


class IntegrationCredentialForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=IntegrationCredential.Scope.choices,
        initial=[IntegrationCredential.Scope.EMBED],
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = IntegrationCredential
        fields = ["tenant", "name", "scopes"]

    def clean(self):
        cleaned = super().clean()
        name = cleaned["name"] = whitespace_collapsed(cleaned.get("name"))
        tenant = cleaned.get("tenant")
        if tenant and credential_name_taken(tenant, name):
            self.add_error("name", credential_name_taken_message(name))
        return cleaned


@admin.register(IntegrationCredential)
class IntegrationCredentialAdmin(OneTimeSecretMixin, AdminKindMixin, admin.ModelAdmin):
    """Credentials of a tenant's integrations (the embedding API's ``Basic`` credential)."""

    view_kinds = change_kinds = TOKEN_VIEWER_KINDS
    form = IntegrationCredentialForm
    secret_label = "integration credential"
    list_display = ["name", "tenant", "scopes", "display_prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["tenant"]

    def get_list_filter(self, request):
        return self.list_filter if user_is_main_administrator(request.user) else []

    readonly_fields = ["display_prefix", "created_at", "created_by", "last_used_at", "revoked_at", "revoked_by"]
    actions = ["revoke_credentials"]

    def get_queryset(self, request):
        return visible_to(request.user, super().get_queryset(request).select_related("tenant"))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "tenant":
            kwargs["queryset"] = tenants_visible_to(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        issued = integration_credential_create(
            tenant=form.cleaned_data["tenant"],
            name=form.cleaned_data["name"],
            actor=request.user,
            scopes=form.cleaned_data["scopes"],
            ip=client_ip(request),
        )
        obj.pk, obj.display_prefix, obj._state.adding = issued.credential.pk, issued.credential.display_prefix, False
        request._issued_secret = issued.plaintext

    @admin.action(description="Revoke selected integration credentials")
    def revoke_credentials(self, request, queryset):
        for credential in queryset:
            integration_credential_revoke(credential=credential, actor=request.user, ip=client_ip(request))
        self.message_user(request, f"{counted(queryset.count(), 'credential')} revoked.")


class OAuthClientForm(forms.ModelForm):
    allowed_scopes = forms.CharField(
        required=False, help_text="Permission codes separated by spaces; empty: any the token has."
    )

    class Meta:
        model = OAuthClient
        fields = ["application", "name", "token_exchange_enabled", "allowed_scopes", "access_token_lifetime"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["allowed_scopes"] = " ".join(self.instance.allowed_scopes)

    def clean_allowed_scopes(self) -> list[str]:
        return self.cleaned_data["allowed_scopes"].split()

    def clean(self):
        cleaned = super().clean()
        name, application = whitespace_collapsed(cleaned.get("name")), cleaned.get("application")
        if not self.instance.pk and application and oauth_client_name_taken(application, name):
            self.add_error("name", f"The application already has an OAuth client named “{name}”.")
        return cleaned


@admin.register(OAuthClient)
class OAuthClientAdmin(OneTimeSecretMixin, AdminKindMixin, admin.ModelAdmin):
    """OAuth clients of applications (token exchange, introspection, revocation)."""

    view_kinds = change_kinds = APPLICATION_ADMIN_KINDS
    form = OAuthClientForm
    secret_label = "client secret"
    list_display = ["name", "application", "client_id", "token_exchange_enabled", "access_token_lifetime", "revoked_at"]
    list_filter = ["application", "token_exchange_enabled"]
    readonly_fields = ["client_id", "created_at", "revoked_at"]
    actions = ["revoke_clients"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "application"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        issued = oauth_client_create(
            application=form.cleaned_data["application"],
            name=form.cleaned_data["name"],
            actor=request.user,
            token_exchange=form.cleaned_data["token_exchange_enabled"],
            allowed_scopes=form.cleaned_data["allowed_scopes"],
            access_token_lifetime=form.cleaned_data["access_token_lifetime"],
        )
        obj.pk, obj.client_id, obj._state.adding = issued.client.pk, issued.client.client_id, False
        request._issued_secret = issued.secret
        request._issued_extra = f"Client id: {issued.client.client_id}"
        return None

    @admin.action(description="Revoke selected OAuth clients")
    def revoke_clients(self, request, queryset):
        live = list(queryset.filter(revoked_at__isnull=True))
        for client in live:
            oauth_client_revoke(client=client, actor=request.user, ip=client_ip(request))
        self.message_user(
            request, f"{len(live)} OAuth client{pluralize(len(live))} revoked; their access tokens no longer work."
        )


admin.site.page_register("dashboard/", dashboard_view, name="dashboard")
from tokens import webhooks_admin  # noqa: E402,F401 - registers the webhook pages
