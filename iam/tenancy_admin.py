"""The console's pages of tenants, applications and their switches (registered
by ``iam.admin``: their writes are identity's services, with actor and audit)."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from core.admin import APPLICATION_ADMIN_KINDS, MAIN_KINDS, USER_ADMIN_KINDS, AdminKindMixin, ConfirmInactivationMixin
from core.changes import ChangeReport
from core.http import client_ip
from core.networks import NetworksField
from core.text import counted
from iam.admin_site import audit_history_redirect
from iam.selectors import tenants_visible_to, user_is_main_administrator
from iam.tenancy import (
    APPLICATION_FIELDS,
    TENANT_ADMIN_POLICY_FIELDS,
    application_create,
    application_route_rules_set,
    application_update,
    gateway_hosts_errors,
    reminder_days_parsed,
    tenant_application_set_pats_allowed,
    tenant_create,
    tenant_update,
)
from tenants.models import Application, RouteRule, Tenant, TenantApplication
from tenants.routes import ANY_METHOD, METHODS, path_normalized, route_decide, rule_errors, rules_of

# The usual choices, one click each (static/js/reminder-days.js fills the field).
REMINDER_PRESETS = [("None", []), ("1 day", [1]), ("7 and 1 days", [7, 1]), ("30, 7 and 1 days", [30, 7, 1])]


def _days_text(days: list[int]) -> str:
    return ", ".join(str(day) for day in days)


class ReminderDaysWidget(forms.TextInput):
    """The days as text ("7, 1") and, beside it, preset buttons that fill it in.
    The buttons stay hidden until the script shows them: without it they would do nothing."""

    class Media:
        css = {"all": ["css/reminder-days.css"]}
        js = ["js/reminder-days.js"]

    def __init__(self, attrs=None):
        super().__init__({"size": 20, "inputmode": "numeric", "placeholder": "7, 1", **(attrs or {})})

    def render(self, name, value, attrs=None, renderer=None):
        field = super().render(name, value, attrs, renderer)
        field_id = (attrs or {}).get("id") or self.attrs.get("id") or ""
        buttons = format_html_join(
            " ",
            '<button type="button" class="button reminder-preset" data-days="{}">{}</button>',
            ((_days_text(days), label) for label, days in REMINDER_PRESETS),
        )
        return format_html(
            '{} <span class="reminder-presets" data-for="{}" role="group" aria-label="Presets" hidden>{}</span>',
            field,
            field_id,
            buttons,
        )


class ReminderDaysField(forms.CharField):
    """A tenant's reminder days typed as a list ("7, 1"), kept as a list of ints, largest first."""

    widget = ReminderDaysWidget

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", 200)
        super().__init__(**kwargs)

    def prepare_value(self, value):
        return _days_text(value) if isinstance(value, list | tuple) else value

    def to_python(self, value):
        return _days_text(value) if isinstance(value, list | tuple) else super().to_python(value)

    def has_changed(self, initial, data) -> bool:
        # "1, 7" for a stored [7, 1] is no change (nor an audit event).
        days, errors = reminder_days_parsed(self.to_python(data))
        return bool(errors) or days != list(initial or [])

    def clean(self, value) -> list[int]:
        days, errors = reminder_days_parsed(super().clean(value))
        if errors:
            raise forms.ValidationError(errors)
        return days


class TenantForm(forms.ModelForm):
    reminder_days = ReminderDaysField(
        label="Expiry reminders (days before)",
        help_text="Owners are e-mailed this many days before a token expires: whole days from 1 to 365, "
        "separated by commas, e.g. 7, 1. Empty: no reminders.",
    )
    allowed_networks = NetworksField(
        label="Allowed networks",
        help_text="CIDR ranges (IPv4 or IPv6), one per line, that every token of the tenant must be used from; "
        "a token's own list may only narrow them. Empty: any address.",
    )

    class Meta:
        model = Tenant
        fields = ["name", "slug", *TENANT_ADMIN_POLICY_FIELDS, "admins_may_issue_pats_via_api"]


@admin.register(Tenant)
class TenantAdmin(ConfirmInactivationMixin, AdminKindMixin, admin.ModelAdmin):
    """Tenants: main administrators create and change any; a tenant's user
    administrators see their own and change its policies (not its name or slug)."""

    view_kinds = change_kinds = USER_ADMIN_KINDS
    form = TenantForm
    list_display = ["name", "slug", "pat_max_lifetime_days", "admins_may_issue_pats_via_api", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}

    def get_queryset(self, request):
        return tenants_visible_to(request.user)

    def history_view(self, request, object_id, extra_context=None):
        return audit_history_redirect(self, request, object_id, "tenant")

    def has_add_permission(self, request):
        return self._kind(request) in MAIN_KINDS

    def get_fields(self, request, obj=None):
        fields = TenantForm._meta.fields
        return fields if user_is_main_administrator(request.user) else [name for name in fields if name != "slug"]

    def get_readonly_fields(self, request, obj=None):
        return [] if user_is_main_administrator(request.user) else ["name"]

    def log_change(self, request, obj, message):
        if message:  # a form saved unchanged (a user administrator's readonly name resent) is no change
            return super().log_change(request, obj, message)
        return None

    def get_prepopulated_fields(self, request, obj=None):
        return self.prepopulated_fields if user_is_main_administrator(request.user) else {}

    def save_model(self, request, obj, form, change):
        # A change goes through the service: audited, and a shorter maximum
        # lifetime shortens the tokens beyond it (confirmed first, see the mixin).
        if not change:
            tenant_create(tenant=obj, actor=request.user, ip=client_ip(request))
            return None
        changed = {name: form.cleaned_data[name] for name in form.changed_data if name in form.cleaned_data}
        saved = tenant_update(tenant=obj, changes=changed, actor=request.user, ip=client_ip(request))
        obj.__dict__.update({name: getattr(saved, name) for name in changed})
        return None


class GatedByApplicationInline(admin.TabularInline):
    """An inline of the application's page: whoever may open the page (application
    administrators, see ``ApplicationAdmin``) may use it; its writes go through services."""

    may_delete = False

    def has_view_permission(self, request, obj=None):
        return True

    def has_add_permission(self, request, obj=None):
        return True

    def has_change_permission(self, request, obj=None):
        return True

    def has_delete_permission(self, request, obj=None):
        return self.may_delete


class TenantApplicationInline(GatedByApplicationInline):
    """Authorization > Applications > tab Form: "Allow personal access tokens" per tenant."""

    model = TenantApplication
    extra = 0
    fields = ["tenant", "allows_pats"]
    verbose_name = "tenant"
    verbose_name_plural = "availability in tenants"

    def get_fields(self, request, obj=None):
        # An existing switch names its tenant as text: Django links a read-only
        # relation to its page, which an application administrator may not open.
        return ["tenant_name", "allows_pats"] if obj else self.fields

    def get_readonly_fields(self, request, obj=None):
        return ["tenant_name"] if obj else []

    @admin.display(description="tenant")
    def tenant_name(self, link: TenantApplication) -> str:
        return link.tenant.name


def _tokens_are(count: int, state: str) -> str:
    return f"{counted(count, 'token')} {'is' if count == 1 else 'are'} {state}"


def switch_said(where: str, allowed: bool, report: ChangeReport) -> str:
    """What switching PATs for ``where`` did, in the console's words: how many
    tokens it made active again or inactive (the report counts only those that changed)."""
    if allowed:
        again = report.tokens_reactivated
        if not again:
            return f"PATs allowed for {where}; no token became active again."
        return f"PATs allowed again for {where}; {_tokens_are(again, 'active again')}."
    stopped = report.tokens_affected - report.tokens_reactivated
    if not stopped:
        return f"PATs no longer allowed for {where}; no active token was affected."
    owners = "Its owner is" if stopped == 1 else "Their owners are"
    return f"PATs no longer allowed for {where}; {_tokens_are(stopped, 'inactive now')}. {owners} told by e-mail."


class SwitchThroughServiceMixin:
    """Every change of a "allow personal access tokens" switch goes through the
    service, so it is audited and the tokens it affects are recorded; the
    console then says what it did to them."""

    def apply_switch(self, request, link: TenantApplication, allowed: bool, *, say: bool = True) -> ChangeReport:
        report = tenant_application_set_pats_allowed(
            tenant=link.tenant, application=link.application, allowed=allowed, actor=request.user, ip=client_ip(request)
        )
        if say:
            messages.success(request, switch_said(f"{link.application.name} in {link.tenant.name}", allowed, report))
            request._pats_switch_said = True
        return report

    def switch_many(self, request, queryset, allowed: bool) -> None:
        """An action's switches, with one message for them all."""
        links = list(queryset.select_related("tenant", "application"))
        flipped = [link for link in links if link.allows_pats != allowed]
        if not flipped:
            state = "allow" if allowed else "do not allow"
            messages.info(request, f"The selected applications already {state} PATs in those tenants.")
            return
        if len(flipped) == 1:
            self.apply_switch(request, flipped[0], allowed)
            return
        reports = [self.apply_switch(request, link, allowed, say=False) for link in flipped]
        total = ChangeReport([effect for report in reports for effect in report.effects])
        where = counted(len(flipped), "application in a tenant", "applications in tenants")
        if len(links) > len(flipped):
            where += f" ({len(links) - len(flipped)} already did)"
        messages.success(request, switch_said(where, allowed, total))


class PermissionCodesField(forms.CharField):
    """Permission codes typed as text (spaces, commas or lines between them), kept as a list."""

    def to_python(self, value) -> list[str]:
        if isinstance(value, list):
            return value
        return [code for code in (value or "").replace(",", " ").split() if code]

    def prepare_value(self, value) -> str:
        return " ".join(value) if isinstance(value, list) else value


class RouteRuleForm(forms.ModelForm):
    method = forms.ChoiceField(
        choices=[(ANY_METHOD, "any")] + [(method, method) for method in METHODS], initial=ANY_METHOD
    )
    permissions = PermissionCodesField(
        required=False,
        initial=list,
        label="Required permissions",
        widget=forms.TextInput(attrs={"size": 40, "placeholder": "any valid token"}),
    )

    class Meta:
        model = RouteRule
        fields = ["position", "method", "path", "permissions"]
        widgets = {"path": forms.TextInput(attrs={"size": 30, "placeholder": "/orders/**"})}

    def clean(self):
        cleaned = super().clean()
        if "path" in cleaned:
            errors = rule_errors(cleaned.get("method", ""), cleaned["path"], cleaned.get("permissions", []))
            for name, messages in errors.items():
                self.add_error(name, messages)
        return cleaned


class RouteRuleInline(GatedByApplicationInline):
    """The gateway's route rules: the first whose method and path match decides."""

    model = RouteRule
    form = RouteRuleForm
    extra = 1
    verbose_name_plural = "gateway route rules (tried in order; the first match decides)"
    may_delete = True


class ApplicationForm(forms.ModelForm):
    class Meta:
        model = Application
        fields = ["name", "slug", "description", "gateway_hosts", "gateway_default"]
        widgets = {"gateway_hosts": forms.Textarea(attrs={"rows": 2, "cols": 40})}

    def clean_gateway_hosts(self) -> str:
        hosts, errors = gateway_hosts_errors(self.cleaned_data.get("gateway_hosts", ""), self.instance)
        if errors:
            raise forms.ValidationError(errors)
        return hosts


class GatewayTestForm(forms.Form):
    method = forms.ChoiceField(choices=[(method, method) for method in METHODS])
    uri = forms.CharField(label="Path", max_length=2000, initial="/")
    permissions = PermissionCodesField(
        required=False,
        label="The token's permissions",
        help_text="Optional: see whether a token with these permissions would be let through.",
    )


@admin.register(Application)
class ApplicationAdmin(SwitchThroughServiceMixin, ConfirmInactivationMixin, AdminKindMixin, admin.ModelAdmin):
    view_kinds = change_kinds = APPLICATION_ADMIN_KINDS
    form = ApplicationForm
    list_display = ["name", "slug", "id", "allowed_in"]
    search_fields = ["name", "slug"]
    readonly_fields = ["id", "gateway_test"]
    fieldsets = [
        (None, {"fields": ["id", "name", "slug", "description"]}),
        (
            "Gateway (forward authentication)",
            {
                "fields": ["gateway_hosts", "gateway_default", "gateway_test"],
                "description": "A reverse proxy in front of the application asks GET /auth/forward before each "
                "request; these settings and the route rules below decide (see the README's gateway section).",
            },
        ),
    ]
    inlines = [TenantApplicationInline, RouteRuleInline]

    @admin.display(description="Test a request")
    def gateway_test(self, application: Application) -> str:
        if application.pk is None or application._state.adding:
            return "Save the application first."
        url = reverse("admin:tenants_application_gateway_test", args=[application.pk])
        return format_html('<a href="{}">Which rule decides a request?</a>', url)

    def get_urls(self):
        return [
            path(
                "<uuid:application_id>/gateway-test/",
                self.admin_site.admin_view(self.gateway_test_view),
                name="tenants_application_gateway_test",
            ),
            *super().get_urls(),
        ]

    def gateway_test_view(self, request: HttpRequest, application_id) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        application = self.get_queryset(request).filter(pk=application_id).first()
        if application is None:
            raise PermissionDenied
        form = GatewayTestForm(request.GET if "uri" in request.GET else None)
        rules = rules_of(application.route_rules.all())
        result = None
        if form.is_valid():
            method, uri = form.cleaned_data["method"], form.cleaned_data["uri"]
            normalized = path_normalized(uri)
            decision = route_decide(rules, application.gateway_default, method, normalized)
            granted = frozenset(form.cleaned_data["permissions"])
            result = {
                "method": method,
                "path": normalized,
                "decision": decision,
                "missing": decision.missing(granted),
                "asked_with_permissions": bool(form.cleaned_data["permissions"]),
            }
        context = {
            **self.admin_site.each_context(request),
            "title": f"Test a request to {application.name}",
            "application": application,
            "rules": rules,
            "form": form,
            "result": result,
            "opts": self.model._meta,
            "original": application,
        }
        return TemplateResponse(request, "admin/tenants/application/gateway_test.html", context)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("tenant_links__tenant")

    @admin.display(description="allows personal access tokens in")
    def allowed_in(self, application: Application) -> str:
        return ", ".join(link.tenant.slug for link in application.tenant_links.all() if link.allows_pats) or "no tenant"

    def save_model(self, request, obj, form, change):
        if not change:
            application_create(application=obj, actor=request.user, ip=client_ip(request))
            return None
        changed = {name: form.cleaned_data[name] for name in form.changed_data if name in APPLICATION_FIELDS}
        application_update(application=obj, changes=changed, actor=request.user, ip=client_ip(request))
        return None

    def save_formset(self, request, form, formset, change):
        if formset.model is RouteRule:
            return self._save_route_rules(request, form, formset)
        if formset.model is not TenantApplication:
            return super().save_formset(request, form, formset, change)
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for link_form in formset.forms:
            if not link_form.has_changed():
                continue
            link = link_form.instance
            wanted = link_form.cleaned_data.get("allows_pats", False)
            link.application = form.instance
            self.apply_switch(request, link, wanted)
        return None

    def _save_route_rules(self, request, form, formset) -> None:
        """The whole list through the service, in the order of its positions (then as listed): audited once."""
        kept = [
            (rule_form.cleaned_data.get("position") or 0, index, rule_form.cleaned_data)
            for index, rule_form in enumerate(formset.forms)
            if rule_form.cleaned_data
            and rule_form.cleaned_data.get("path")
            and not formset._should_delete_form(rule_form)
        ]
        rules = [
            {"method": data["method"], "path": data["path"], "permissions": data["permissions"]}
            for _, _, data in sorted(kept, key=lambda item: item[:2])
        ]
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        application_route_rules_set(application=form.instance, rules=rules, actor=request.user, ip=client_ip(request))


@admin.register(TenantApplication)
class TenantApplicationAdmin(SwitchThroughServiceMixin, ConfirmInactivationMixin, AdminKindMixin, admin.ModelAdmin):
    """The switches side by side, with actions to flip many at once."""

    view_kinds = change_kinds = APPLICATION_ADMIN_KINDS
    list_display = ["application", "tenant", "allows_pats"]
    list_filter = ["allows_pats", "tenant", "application"]
    list_select_related = ["application", "tenant"]
    actions = ["allow_pats", "disallow_pats"]
    fields = ["tenant", "application", "allows_pats"]

    def get_readonly_fields(self, request, obj=None):
        return ["tenant", "application"] if obj else []

    def save_model(self, request, obj, form, change):
        allowed = form.cleaned_data["allows_pats"]
        if change and "allows_pats" not in form.changed_data:
            return  # saved unchanged: nothing to switch, nothing to say but Django's "changed"
        # A new link left switched off changed nothing: Django's "added" says enough.
        self.apply_switch(request, obj, allowed, say=change or allowed)
        saved = TenantApplication.objects.get(tenant=obj.tenant, application=obj.application)
        obj.pk, obj.allows_pats = saved.pk, saved.allows_pats

    def message_user(self, request, message, level=messages.INFO, *args, **kwargs):
        # The switch's own message says more than Django's "… was changed successfully".
        if level == messages.SUCCESS and getattr(request, "_pats_switch_said", False):
            return
        super().message_user(request, message, level, *args, **kwargs)

    @admin.action(description="Allow personal access tokens")
    def allow_pats(self, request, queryset):
        self.switch_many(request, queryset, True)

    @admin.action(description="Disallow personal access tokens")
    def disallow_pats(self, request, queryset):
        self.switch_many(request, queryset, False)
