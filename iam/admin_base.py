"""Building blocks of the console's ModelAdmins."""

from collections.abc import Callable

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.functional import cached_property

from iam.selectors import user_admin_kind
from tokens.models import PersonalAccessToken
from tokens.services import collecting_validity_changes

CONFIRM_INACTIVATION_FIELD = "_confirm_inactivation"


class AdminKindMixin:
    """Open a ModelAdmin to some administrator kinds only ("main", "user",
    "application"). Objects outside the queryset answer 404, not Django's
    redirect, so a tampered URL reveals nothing."""

    view_kinds: frozenset[str] = frozenset({"main"})
    change_kinds: frozenset[str] = frozenset({"main"})

    def _kind(self, request: HttpRequest) -> str | None:
        return user_admin_kind(request.user)

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

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        raise Http404("No such object.")

    def history_view(self, request, object_id, extra_context=None):
        # Django looks the object up first; a kind that may not open the page
        # gets 403 whatever the id, as on the change page.
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        return super().history_view(request, object_id, extra_context)


class ConfirmInactivationMixin:
    """Before an administrator's change makes active tokens inactive, say so.

    The change runs once inside a transaction; if the services report tokens
    that it would make inactive and the administrator has not confirmed, the
    transaction is rolled back and a page lists them with a button that
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
        queued = messages.get_messages(request)
        already_queued = len(getattr(queued, "_queued_messages", []))
        with transaction.atomic(), collecting_validity_changes() as changes:
            response = view()
            inactivated = [change for change in changes if not change.after.is_usable]
            if not inactivated:
                return response
            tokens = {
                token.pk: token
                for token in PersonalAccessToken.objects.filter(
                    pk__in=[c.token_id for c in inactivated]
                ).select_related("owner", "application", "tenant")
            }
            rows = [(tokens[change.token_id], change.after.reason_text) for change in inactivated]
            transaction.set_rollback(True)
        if hasattr(queued, "_queued_messages"):
            del queued._queued_messages[already_queued:]
        fields = [
            (key, value) for key, values in request.POST.lists() if key != "csrfmiddlewaretoken" for value in values
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Confirm: tokens will become inactive",
            "rows": rows,
            "count": len(rows),
            "fields": fields,
            "confirm_field": CONFIRM_INACTIVATION_FIELD,
            "opts": self.model._meta,
            "cancel_url": request.get_full_path(),
        }
        return TemplateResponse(request, "admin/confirm_inactivation.html", context)


class IndexOrderedChangeList(ChangeList):
    """Break ties by id in the direction of the first sort column: Django
    appends a descending id whatever that direction, so "name" would need an
    index on (name, -id) and "-name" another on (name, id); this way one index
    on (column, id) serves both."""

    def _get_deterministic_ordering(self, ordering):
        ordering = list(ordering)
        named = [part for part in ordering if isinstance(part, str)]
        if named and named[0] == ordering[0] and not {"pk", "-pk", "id", "-id"} & set(named):
            ordering.append("-pk" if named[0].startswith("-") else "pk")
        return super()._get_deterministic_ordering(ordering)


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


class ReadOnlyAdmin(AdminKindMixin, admin.ModelAdmin):
    """A list and detail view that nobody edits, adds to or deletes from."""

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False
