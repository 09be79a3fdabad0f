"""Forms of the self-service pages. They only parse input; the rules live in
``tokens.services`` and their errors are put back on the fields here."""

from datetime import date, datetime, timedelta

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

from core.api.filters import MAX_DATABASE_INTEGER
from core.errors import DomainError
from core.networks import NetworksField
from core.text import whitespace_collapsed
from iam.models import Role, User
from iam.selectors import roles_held_for_tokens
from tenants.models import Application
from tokens.models import PersonalAccessToken
from tokens.selectors import (
    applications_for_token_creation,
    applications_with_pats_switched_off,
    roles_for_token,
    token_name_taken,
)
from tokens.services import token_name_taken_message

PRESET_DAYS = (7, 30, 90, 365)
CUSTOM = "custom"
# Service error fields that have another name on the pages.
FIELD_NAMES = {"expires_at": "expires_on"}


def expiry_from_date(day: date, now: datetime) -> datetime:
    """The chosen day at the current time of day: "tomorrow" is exactly one day ahead."""
    return datetime.combine(day, now.timetz()).astimezone(now.tzinfo)


class RoleChoiceField(forms.ModelMultipleChoiceField):
    widget = forms.CheckboxSelectMultiple
    default_error_messages = {"required": "Choose at least one permission."}

    def clean(self, value):
        # An id past the database's integer range would fail the query (a 500): no role has it.
        for pk in value if isinstance(value, list | tuple) else ():
            try:
                out_of_range = abs(int(pk)) > MAX_DATABASE_INTEGER
            except (TypeError, ValueError):
                continue  # not a number: Django refuses it
            if out_of_range:
                message = self.error_messages["invalid_choice"]
                raise ValidationError(message, code="invalid_choice", params={"value": pk})
        return super().clean(value)

    def label_from_instance(self, role: Role) -> str:
        # The description and permission codes are shown beside the label (see role_choices).
        # Said before choosing: the token then waits for a user administrator.
        return f"{role.name} (needs an administrator's approval)" if role.needs_token_approval else role.name


class TokenFormMixin:
    def role_choices(self) -> list[tuple[object, Role, list[str]]]:
        """Each role checkbox with its role and the permission codes a token with
        it gets, sorted as /api/v1/me lists them, so the page can show all three."""
        roles = {str(role.pk): role for role in self.fields["roles"].queryset}
        choices = []
        for checkbox in self["roles"]:
            role = roles[str(checkbox.data["value"])]
            choices.append((checkbox, role, sorted(set(role.permissions or ()))))
        return choices

    def apply_domain_error(self, error: DomainError) -> None:
        """Show a service's refusal on the fields it names, or above the form."""
        if not error.fields:
            self.add_error(None, error.message)
        for field, messages in error.fields.items():
            name = FIELD_NAMES.get(field, field)
            for message in messages:
                self.add_error(name if name in self.fields else None, message)

    def clean_name_in_use(self, cleaned: dict, owner: User, exclude_id: int | None = None) -> None:
        """Refuse a name the owner already uses here, with the other errors, so
        the page shows every problem at once (the service checks it again)."""
        name = whitespace_collapsed(cleaned.get("name") or "")
        if name and token_name_taken(owner, name, exclude_id=exclude_id):
            self.add_error("name", token_name_taken_message(name))

    def expiry_bounds(self, user: User, now: datetime) -> tuple[date, date]:
        today = now.date()
        return today + timedelta(days=1), today + timedelta(days=user.tenant.max_token_lifetime_days)

    def setup_presets(self, user: User) -> None:
        max_days = user.tenant.max_token_lifetime_days
        presets = [(str(days), f"{days} days") for days in PRESET_DAYS if days <= max_days]
        self.fields["expiry_preset"].choices = [*presets, (CUSTOM, "Choose a date")]
        self.fields["expiry_preset"].initial = presets[min(1, len(presets) - 1)][0] if presets else CUSTOM

    def clean_expiry_choice(self, cleaned: dict) -> None:
        """Put the expiry chosen by preset or date in ``cleaned["expires_at"]``."""
        preset = cleaned.get("expiry_preset")
        if preset == CUSTOM:
            if not cleaned.get("expires_on"):
                self.add_error("expires_on", "Choose an expiry date.")
            elif self.check_date_within_bounds(cleaned["expires_on"]):
                cleaned["expires_at"] = expiry_from_date(cleaned["expires_on"], self.now)
        elif preset:
            cleaned["expires_at"] = self.now + timedelta(days=int(preset))

    def check_date_within_bounds(self, day: date) -> bool:
        """Refuse a date outside the range the help text and the input's min/max give."""
        first, last = self.date_bounds
        if first <= day <= last:
            return True
        self.add_error("expires_on", f"Choose a date from {first:%-d %b %Y} to {last:%-d %b %Y}.")
        return False

    def expiry_result(self) -> date | None:
        """The day the chosen expiry falls on, shown next to the choice (the
        page's script updates it as the choice changes)."""
        preset = self["expiry_preset"].value()
        if preset == CUSTOM:
            day = self["expires_on"].value()
            if isinstance(day, str):
                try:
                    day = date.fromisoformat(day)
                except ValueError:
                    return None
            return day or None
        if preset and str(preset).isdigit():
            return (self.now + timedelta(days=int(preset))).date()
        return None

    def setup_expiry(self, user: User, now: datetime, first: date | None = None) -> None:
        """Give the date input the same range as its help text and as the
        form's check (``first`` lowers the minimum, e.g. to a token's current date)."""
        earliest, last = self.expiry_bounds(user, now)
        first = min(first, earliest) if first else earliest
        self.date_bounds = (first, last)
        self.fields["expires_on"].widget.attrs.update({"min": first.isoformat(), "max": last.isoformat()})
        self.fields[
            "expires_on"
        ].help_text = f"From {first:%-d %b %Y} to {last:%-d %b %Y}; the token expires at this time of day."


ADMINISTRATIVE = "administrative"  # the application choice of an administrative token


def networks_field(tenant_networks: list[str]) -> NetworksField:
    within = f" within your tenant's ({', '.join(tenant_networks)})" if tenant_networks else ""
    return NetworksField(
        label="Allowed networks",
        help_text=f"Optional: the CIDR ranges it may be used from{within}, one per line, "
        "e.g. 203.0.113.0/24 or 2001:db8::/32. Empty: any address"
        + (" your tenant allows." if tenant_networks else "."),
    )


def purpose_field() -> forms.CharField:
    return forms.CharField(
        max_length=500,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Optional: what the token is for and where it is kept, up to 500 characters.",
    )


class TokenCreateForm(TokenFormMixin, forms.Form):
    application = forms.ChoiceField()
    name = forms.CharField(max_length=100, help_text="A short name, e.g. “Calendar sync”.")
    purpose = purpose_field()
    expiry_preset = forms.ChoiceField(label="Expires in", widget=forms.RadioSelect)
    expires_on = forms.DateField(
        label="Expiry date", required=False, widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )
    roles = RoleChoiceField(label="Permissions", queryset=Role.objects.none())

    def __init__(self, *args, user: User, now: datetime, **kwargs):
        super().__init__(*args, **kwargs)
        self.user, self.now = user, now
        self.fields["allowed_networks"] = networks_field(user.tenant.allowed_networks)
        self.applications = {str(app.pk): app for app in applications_for_token_creation(user)}
        # Holders of the service's PAT-eligible roles make administrative tokens here too.
        service_roles = roles_for_token(user, None).exists()
        self.fields["application"].choices = [(key, app.name) for key, app in self.applications.items()] + (
            [(ADMINISTRATIVE, "This service's API (administrative token)")] if service_roles else []
        )
        self.offers_anything = bool(self.fields["application"].choices)
        # Applications left out because the tenant switched tokens off: said on the page, not hidden.
        self.switched_off = list(applications_with_pats_switched_off(user))
        # Roles of every offered application; the page shows those of the chosen one.
        offered = Q(application__in=list(self.applications.values()))
        if service_roles:
            offered |= Q(application__isnull=True)
        self.fields["roles"].queryset = (
            roles_held_for_tokens(user)
            .filter(offered)
            .select_related("application")
            .order_by("application__name", "name")
        )
        self.setup_presets(user)
        self.setup_expiry(user, now)

    def clean_application(self) -> Application | None:
        value = self.cleaned_data["application"]
        return None if value == ADMINISTRATIVE else self.applications[value]

    def clean(self):
        # Every check runs whatever else failed, so the page shows all problems at once.
        cleaned = super().clean()
        self.clean_name_in_use(cleaned, self.user)
        self.clean_expiry_choice(cleaned)
        roles = cleaned.get("roles")
        if "application" in cleaned and roles:
            application = cleaned["application"]
            if any(role.application_id != (application.pk if application else None) for role in roles):
                where = application.name if application else "this service (administrative)"
                self.add_error("roles", f"Choose permissions of {where} only.")
        return cleaned

    def roles_by_application(self) -> list[tuple[str, str, list]]:
        """The role choices grouped by application (key, name, [(checkbox, role, codes)]), for the template."""
        groups: dict[str, tuple[str, list]] = {}
        for checkbox, role, codes in self.role_choices():
            application = role.application
            key = str(application.pk) if application else ADMINISTRATIVE
            name = application.name if application else "This service's API"
            groups.setdefault(key, (name, []))[1].append((checkbox, role, codes))
        return [(key, name, choices) for key, (name, choices) in groups.items()]


class TokenEditForm(TokenFormMixin, forms.Form):
    name = forms.CharField(max_length=100)
    purpose = purpose_field()
    expires_on = forms.DateField(label="Expiry date", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    roles = RoleChoiceField(label="Permissions", queryset=Role.objects.none())

    def __init__(self, *args, token: PersonalAccessToken, now: datetime, **kwargs):
        self.token, self.now = token, now
        current = timezone.localtime(token.expires_at, timezone.get_current_timezone()).date()
        kwargs.setdefault(
            "initial",
            {
                "name": token.name,
                "purpose": token.purpose,
                "expires_on": current,
                "roles": list(token.roles.all()),
                "allowed_networks": token.allowed_networks,
            },
        )
        super().__init__(*args, **kwargs)
        self.fields["allowed_networks"] = networks_field(token.tenant.allowed_networks)
        offered = roles_for_token(token.owner, token.application)
        self.fields["roles"].queryset = offered
        # Roles of the token the owner may no longer choose, shown so none disappears silently.
        offered_ids = {role.pk for role in offered}
        self.lost_roles = [
            (role, "no longer available for tokens" if not role.pat_eligible else "you no longer hold it")
            for role in token.roles.all()
            if role.pk not in offered_ids
        ]
        # An expired (or nearly expired) token keeps its date selectable, e.g. to rename it.
        self.setup_expiry(token.owner, now, first=current)
        self.current_expiry_date = current

    def clean(self):
        cleaned = super().clean()
        self.clean_name_in_use(cleaned, self.token.owner, exclude_id=self.token.pk)
        day = cleaned.get("expires_on")
        if day is not None and (day == self.current_expiry_date or self.check_date_within_bounds(day)):
            # Keeping the date keeps the exact expiry; a new date moves it.
            cleaned["expires_at"] = (
                self.token.expires_at if day == self.current_expiry_date else expiry_from_date(day, self.now)
            )
        return cleaned


GRACE_CHOICES = (("0", "At once"), ("3600", "In 1 hour"), ("86400", "In 24 hours"))


class TokenRegenerateForm(TokenFormMixin, forms.Form):
    """A new secret for a token: its expiry chosen as at creation, and when the old one stops."""

    expiry_preset = forms.ChoiceField(label="New secret expires in", widget=forms.RadioSelect)
    expires_on = forms.DateField(
        label="Expiry date", required=False, widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )
    grace = forms.TypedChoiceField(
        label="The old secret stops working",
        choices=GRACE_CHOICES,
        initial="0",
        coerce=lambda seconds: timedelta(seconds=int(seconds)),
        widget=forms.RadioSelect,
        help_text="A delay lets a deployment switch to the new secret; any use of the old one after it ends "
        "the token, as someone else must hold it.",
    )

    def __init__(self, *args, token: PersonalAccessToken, now: datetime, **kwargs):
        super().__init__(*args, **kwargs)
        self.token, self.now = token, now
        self.setup_presets(token.owner)
        self.setup_expiry(token.owner, now)

    def clean(self):
        cleaned = super().clean()
        self.clean_expiry_choice(cleaned)
        return cleaned
