"""Building blocks of the console's ModelAdmins."""

import operator
import uuid
from collections.abc import Callable
from functools import reduce

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ORDER_VAR, SEARCH_VAR, ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import models, transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Lower
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.translation import gettext as _

from core.changes import collecting_reports, confirmation_context

CONFIRM_INACTIVATION_FIELD = "_confirm_inactivation"
# The administrator kinds, as the admin site names them, and who may do what.
MAIN_KINDS = frozenset({"main"})
USER_ADMIN_KINDS = frozenset({"main", "user"})  # users, and the tokens they own
APPLICATION_ADMIN_KINDS = frozenset({"main", "application"})  # applications, roles, integrations
TOKEN_VIEWER_KINDS = USER_ADMIN_KINDS  # the kinds that may see tokens


MAX_BIGINT = 2**63 - 1


def database_id(value: str) -> int | None:
    """``value`` as an id a database can hold (ASCII digits within bigint), or None."""
    return int(value) if value.isascii() and value.isdigit() and int(value) <= MAX_BIGINT else None


def _plausible_filter_value(field, suffix: str, value: str) -> bool:
    """Whether ``value`` can reach the database for this field and lookup
    without overflowing it (a 500): ids within bigint, dates a database can
    hold, booleans as Django's filters send them."""
    if suffix == "isnull" or isinstance(field, models.BooleanField):
        return value in ("0", "1", "True", "False", "true", "false")
    if field.is_relation:
        target = field.target_field
        if isinstance(target, models.UUIDField):
            try:
                uuid.UUID(value)
            except ValueError:
                return False
            return True
        return database_id(value) is not None
    if isinstance(field, models.DateField):  # dates and date-times
        try:
            parsed = parse_datetime(value) or parse_date(value)
        except ValueError:
            return False
        return parsed is not None and 1900 <= parsed.year <= 9000
    return True


class StrictLookupsMixin:
    """The console's lists take only the query parameters their own filters
    offer, with values a database can hold; anything else (``?id__in=…``,
    ``?digest__startswith=…``, a year past 9999) is a 400, never a query.
    Django allows any lookup on a model's own fields."""

    def lookup_allowed(self, lookup, value, request):
        for spec in self.get_list_filter(request):
            if isinstance(spec, type) and issubclass(spec, admin.SimpleListFilter):
                if lookup == spec.parameter_name:
                    return True  # its queryset() checks the value against its choices
                continue
            name = spec[0] if isinstance(spec, tuple) else spec
            if lookup.startswith(f"{name}__"):
                field = self.model._meta.get_field(name)
                suffix = lookup.removeprefix(f"{name}__")
                # The parameters Django's own filter of that field uses, and no other.
                if suffix not in ("exact", "isnull", "id__exact", "pk__exact", "gte", "lt", "id__in"):
                    return False
                values = value.split(",") if suffix.endswith("__in") else [value]
                return all(_plausible_filter_value(field, suffix, item) for item in values)
        return False


class AdminKindMixin(StrictLookupsMixin):
    """Open a ModelAdmin to some administrator kinds only ("main", "user",
    "application"). Objects outside the queryset answer 404, not Django's
    redirect, so a tampered URL reveals nothing."""

    view_kinds: frozenset[str] = MAIN_KINDS
    change_kinds: frozenset[str] = MAIN_KINDS

    def _kind(self, request: HttpRequest) -> str | None:
        return self.admin_site.admin_kind(request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._kind(request) in self.view_kinds

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._kind(request) in self.view_kinds

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._kind(request) in self.change_kinds

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._kind(request) in self.change_kinds

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # nothing here is deleted: it would erase the audit trail's subjects

    def action_checkbox(self, obj):
        # Django renders a form widget through the template engine, once per
        # row: a quarter of a token list's rendering. Same markup, no template.
        label = format_html(_("Select this object for an action - {}"), str(obj))
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            ACTION_CHECKBOX_NAME,
            obj.pk,
            label,
        )

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        # Django answers an unknown id with a redirect to the index; a 404 says
        # what happened. The one private hook kept: Django checks the view's
        # permission before calling it (403 whatever the id), which get_object
        # cannot. tests/test_tenant_isolation.py fails if an upgrade drops it.
        raise Http404("No such object.")

    def history_view(self, request, object_id, extra_context=None):
        # Django looks the object up first; a kind that may not open the page
        # gets 403 whatever the id, as on the change page.
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        return super().history_view(request, object_id, extra_context)


class ConfirmInactivationMixin:
    """Before an administrator's change does something to live tokens (makes
    them inactive, shortens their expiry, widens or narrows what they may
    do), say so.

    The change runs once inside a transaction; if the services report such
    effects (``core.changes``) and the administrator has not confirmed, the
    transaction is rolled back and a page tells them, with a button that
    submits the same change again, confirmed.
    """

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return self._confirm_inactivations(
            request,
            lambda: super(ConfirmInactivationMixin, self).changeform_view(request, object_id, form_url, extra_context),
        )

    def changelist_view(self, request, extra_context=None):
        return self._confirm_inactivations(
            request, lambda: super(ConfirmInactivationMixin, self).changelist_view(request, extra_context)
        )

    def _confirm_inactivations(self, request: HttpRequest, view: Callable[[], HttpResponse]) -> HttpResponse:
        if request.method != "POST" or request.POST.get(CONFIRM_INACTIVATION_FIELD) == "yes":
            return view()
        storage = messages.get_messages(request)
        with storage.holding() as said, transaction.atomic(), collecting_reports() as report:
            response = view()
            if not report.needs_confirmation:
                return response
            # An application administrator sees no tokens: how many, per tenant and reason, only.
            sees_tokens = self.admin_site.admin_kind(request.user) in TOKEN_VIEWER_KINDS
            effects = confirmation_context(report, sees_tokens=sees_tokens)
            transaction.set_rollback(True)
            said.clear()  # the rolled-back change's "changed successfully" is not true
        fields = [
            (key, value) for key, values in request.POST.lists() if key != "csrfmiddlewaretoken" for value in values
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Confirm: this change affects live tokens",
            **effects,
            "fields": fields,
            "confirm_field": CONFIRM_INACTIVATION_FIELD,
            "opts": self.model._meta,
            "cancel_url": request.get_full_path(),
        }
        return TemplateResponse(request, "admin/confirm_inactivation.html", context)


ROW_LINK_ID = "0"  # no row has id 0: marks the place of the id in a row's link


class LargeTableChangeList(ChangeList):
    """Django's changelist for a table of millions: sorted only by what an
    index orders, ties broken by id in the direction of the first sort column
    (Django appends a descending id whatever that direction, so "name" would
    need an index on (name, -id) and "-name" another on (name, id); this way
    one index on (column, id) serves both), and each row's link built once."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Django reverses each row's link and resolves it again to add the
        # list's filters (a tenth of a millisecond a row): build it once, with
        # the filters, and change only the id.
        self._row_link = add_preserved_filters(
            {"preserved_filters": self.preserved_filters, "opts": self.opts},
            reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
                args=(ROW_LINK_ID,),
                current_app=self.model_admin.admin_site.name,
            ),
        )
        self.preserved_filters = ""  # already in the link

    def url_for_result(self, result) -> str:
        return self._row_link.replace(f"/{ROW_LINK_ID}/change/", f"/{quote(result.pk)}/change/", 1)

    def get_ordering(self, request, queryset):
        # Django sorts by any column named in ?o=, sortable or not; a column left
        # out of sortable_by has no index to sort by (seconds at 1M rows).
        if self.sortable_by is not None and self.params.get(ORDER_VAR):
            kept = [part for part in self.params[ORDER_VAR].split(".") if self._names_sortable_column(part)]
            self.params[ORDER_VAR] = ".".join(kept)
            if not kept:
                del self.params[ORDER_VAR]
        ordering = super().get_ordering(request, queryset)
        first = ordering[0] if ordering else None
        if isinstance(first, str) and not first.startswith("-") and ordering[-1] == "-pk":
            ordering[-1] = self.lookup_opts.pk.attname  # Django's tie-breaker, in the first column's direction
        return ordering

    def _names_sortable_column(self, part: str) -> bool:
        try:
            return self.list_display[int(part.rpartition("-")[2])] in self.sortable_by
        except (IndexError, ValueError):
            return False


class CappedCountPaginator(Paginator):
    """Counts at most ``cap`` rows, in SQL (COUNT over a LIMIT subquery): a
    COUNT over a million tokens is never run. The list then says "more than"
    (templates/admin/pagination.html) and pages up to the cap."""

    cap = 1_000

    @cached_property
    def count(self) -> int:
        # Unordered, so the planner may take whichever index (or an early-stopping
        # scan) fits the filter; in the list's order, a selective filter on
        # another column would walk a long way down the order's index.
        return self.object_list.order_by().values("pk")[: self.cap + 1].count()

    @property
    def is_capped(self) -> bool:
        return self.count > self.cap

    @cached_property
    def num_pages(self) -> int:
        # The row past the cap only tells that there are more: no page shows it.
        return max(1, -(-min(self.count, self.cap) // self.per_page))


class TenantListFilter(admin.RelatedFieldListFilter):
    """Django's tenant filter, reading only the names it lists (for a main
    administrator; the others see their own tenant only)."""

    def field_choices(self, field, request, model_admin):
        return list(field.related_model.objects.order_by("name").values_list("pk", "name"))


class IndexedSearchMixin:
    """Search through indexes only, at any size: each kind of match
    (``search_kinds``) is looked up on its own, its newest matches first, and
    the list shows the newest ``search_list_cap`` of their union ("More than
    200" beyond; a broad term is refined rather than paged through). Django's
    default, a contains over every search field at once, reads the table.

    A kind that goes through other rows first (a token's owners, an event's
    tokens) looks at ``search_list_cap + 1`` of them at most, and says so on
    the page when there were more (``matching_ids``). An export searches
    without any cap (``search_everything``)."""

    search_list_cap = 200
    search_time_field = "created_at"  # the list's default order: newest first

    def search_kinds(self, request: HttpRequest, term: str, limit: int | None) -> list[Q]:
        """The kinds of match for ``term``; ``limit`` None: no cap on their lookups."""
        raise NotImplementedError

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        limit = self.search_list_cap + 1
        # Each kind through its own index (an OR of them would read the table);
        # the newest ``limit`` of the union are among each kind's newest ``limit``.
        candidates: set[tuple] = set()
        for kind in self.search_kinds(request, term, limit):
            newest = queryset.filter(kind).order_by(f"-{self.search_time_field}", "-pk")
            candidates.update(newest.values_list(self.search_time_field, "pk")[:limit])
        matches = [pk for _, pk in sorted(candidates, reverse=True)[:limit]]
        # Behind a LIMIT, so PostgreSQL fetches these rows and sorts them: as a
        # plain IN list it walks the list's order index from the newest row,
        # expecting the matches spread evenly (0.9 s at 1M tokens when they are old).
        fenced = self.model.objects.filter(pk__in=matches).order_by().values("pk")[: len(matches)]
        return queryset.filter(pk__in=fenced), False

    def search_everything(self, request: HttpRequest, queryset, term: str):
        """Every match of ``term`` (for an export, which streams them)."""
        kinds = self.search_kinds(request, term.strip(), None)
        return queryset.filter(reduce(operator.or_, kinds)) if term.strip() else queryset

    def search_was_capped(self, request: HttpRequest, queryset) -> bool:
        """Whether the list's search left matches out (so "all" is not all)."""
        cap = self.search_list_cap
        return bool(request.GET.get(SEARCH_VAR, "").strip()) and queryset.order_by()[: cap + 1].count() > cap

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        paginator = super().get_paginator(request, queryset, per_page, orphans, allow_empty_first_page)
        if request.GET.get(SEARCH_VAR, "").strip():
            paginator.cap = self.search_list_cap
        return paginator

    def matching_ids(self, request: HttpRequest, rows: QuerySet, limit: int | None, what: str):
        """The ids of ``rows`` (the other rows a kind goes through): all of them
        as a subquery without a limit; else at most ``limit``, with a warning
        on the page when there were more, since the list is then not complete."""
        ids = rows.order_by().values("pk")  # any ordering would walk a whole index
        if limit is None:
            return ids
        found = [row["pk"] for row in ids[:limit]]
        if len(found) == limit:
            messages.warning(
                request,
                f"The search matches more than {limit - 1} {what}; it looks at {limit} of them. "
                "Refine it to find the others.",
            )
        return found

    def users_starting_with(self, term: str, users: QuerySet) -> QuerySet:
        """The ``users`` whose username or email starts with ``term`` (any case:
        the unique indexes are on their lower())."""
        lowered = term.lower()
        return users.annotate(username_ci=Lower("username"), email_ci=Lower("email")).filter(
            Q(username_ci__startswith=lowered) | Q(email_ci__startswith=lowered)
        )


class ReadOnlyAdmin(AdminKindMixin, admin.ModelAdmin):
    """A list and detail view that nobody edits, adds to or deletes from."""

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False


class ShownOnce(str):
    """A secret for a template: rendered whole, but its repr (what Django's
    template engine logs with the context when a variable is missing) shows
    only its non-secret start."""

    def __repr__(self) -> str:
        return f"'{self[:10]}…'"


class OneTimeSecretMixin:
    """Show a created secret once, in the response to the add form itself:
    never in a message, the session, a URL or the admin log."""

    secret_label = "secret"

    def response_add(self, request, obj, post_url_continue=None):
        secret = getattr(request, "_issued_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{self.model._meta.verbose_name.capitalize()} created",
            "object": obj,
            "subtitle": None,  # admin/base.html asks for it; a missing variable is logged with the context
            "secret": ShownOnce(secret),
            "secret_label": self.secret_label,
            "secret_kept": getattr(self, "secret_kept", "Only a fingerprint of it is kept."),
            "extra": getattr(request, "_issued_extra", None),
            "opts": self.model._meta,
        }
        response = TemplateResponse(request, "admin/one_time_secret.html", context)
        response["Cache-Control"] = "no-store"
        return response
