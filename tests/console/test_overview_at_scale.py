"""What keeps the console fast at a million tokens, and still right: status
filters narrowed by indexable conditions and the services' inactive mark,
capped counts, prefix search, index-friendly orderings and the dashboard's
stored figures above DASHBOARD_LIVE_LIMIT."""

import csv
import io
import logging
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from core.admin import CappedCountPaginator, IndexedSearchMixin
from iam.models import Role, RoleGrant, ServiceRole, User
from iam.services import role_grant_add, role_grant_remove, user_set_active
from tenants.models import TenantApplication
from tests.factories import TenantFactory, UserFactory, grant, service_role
from tokens.admin import PersonalAccessTokenAdmin
from tokens.maintenance import dashboard_figures_refresh, inactive_marks_reconcile
from tokens.models import PersonalAccessToken, TenantTokenFigures
from tokens.rules import EffectiveStatus, token_states
from tokens.selectors import dashboard_figures, tenant_figures, with_effective_status, with_status
from tokens.services import token_delete, token_edit, token_revoke

pytestmark = pytest.mark.django_db

OVERVIEW = "/admin/tokens/personalaccesstoken/"
EVENTS = "/admin/iam/auditevent/"
STATUSES = [
    EffectiveStatus.ACTIVE,
    EffectiveStatus.EXPIRED,
    EffectiveStatus.INACTIVE,
    EffectiveStatus.REVOKED,
    EffectiveStatus.DELETED,
]


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def names(queryset) -> set[str]:
    return set(queryset.values_list("name", flat=True))


def by_rules() -> dict[str, set[str]]:
    tokens = list(PersonalAccessToken.objects.all())
    states = token_states(tokens)
    return {status: {t.name for t in tokens if states[t.pk].status == status} for status in STATUSES}


@pytest.fixture
def every_status(world, user_admin):
    """One token in each effective status, each reached through the services."""
    world.issue("active", roles=("reader",))
    world.issue("inactive", roles=("writer",))
    revoked = world.issue("revoked").token
    deleted = world.issue("deleted").token
    PersonalAccessToken.objects.filter(pk=world.issue("expired").token.pk).update(
        created_at="2020-01-01T00:00Z", expires_at="2020-02-01T00:00Z"
    )
    role_grant_remove(user=world.user, role=world.writer, actor=user_admin)
    token_revoke(token=revoked, actor=user_admin)
    token_delete(token=deleted, actor=world.user)
    return world


def test_each_status_filter_selects_exactly_what_the_rules_say(every_status):
    expected = by_rules()
    assert all(expected[status] for status in STATUSES)  # the fixture covers every status
    for status in STATUSES:
        assert names(with_status(PersonalAccessToken.objects.all(), status)) == expected[status], status


def test_the_sql_status_and_the_filtered_page_agree_with_the_rules(every_status, main_admin):
    tokens = list(with_effective_status(PersonalAccessToken.objects.all()))
    rules = token_states(tokens)
    assert {t.name: t.effective_status for t in tokens} == {t.name: rules[t.pk].status for t in tokens}
    page = signed_in(main_admin).get(OVERVIEW, {"status": "inactive"}).content.decode()
    assert ">inactive<" in page and ">active<" not in page


def test_the_services_keep_the_inactive_mark(world, user_admin):
    token = world.issue("t", roles=("writer",)).token

    def marked() -> bool:
        return PersonalAccessToken.objects.get(pk=token.pk).marked_inactive

    assert not marked()
    role_grant_remove(user=world.user, role=world.writer, actor=user_admin)
    assert marked()
    role_grant_add(user=world.user, role=world.writer, actor=user_admin)
    assert not marked()
    user_set_active(user=world.user, active=False, actor=user_admin)
    assert marked()
    user_set_active(user=world.user, active=True, actor=user_admin)
    role_grant_remove(user=world.user, role=world.writer, actor=user_admin)
    assert marked()
    # The owner repairs the token by choosing roles they still hold.
    token_edit(token=token, actor=world.user, role_codes=[world.reader.code])
    assert not marked()
    assert names(with_status(PersonalAccessToken.objects.all(), EffectiveStatus.ACTIVE)) == {"t"}


def test_a_change_that_bypasses_the_services_is_reconciled_and_logged(world, main_admin, caplog):
    world.issue("t")
    User.objects.filter(pk=world.user.pk).update(is_active=False)  # e.g. a raw query in a shell
    tokens = PersonalAccessToken.objects.all()
    # The lists trust the mark until the reconciliation, but the row tells the truth.
    assert names(with_status(tokens, EffectiveStatus.ACTIVE)) == {"t"}
    page = signed_in(main_admin).get(OVERVIEW, {"status": "active"}).content.decode()
    assert "token-status-inactive" in page and "token-status-active" not in page
    with caplog.at_level(logging.WARNING, logger="tokens.maintenance"):
        assert inactive_marks_reconcile() == 1
    assert "bypassed the services" in caplog.text
    assert names(with_status(tokens, EffectiveStatus.INACTIVE)) == {"t"}
    assert names(with_status(tokens, EffectiveStatus.ACTIVE)) == set()
    User.objects.filter(pk=world.user.pk).update(is_active=True)
    assert inactive_marks_reconcile() == 1
    assert names(with_status(tokens, EffectiveStatus.ACTIVE)) == {"t"}
    assert inactive_marks_reconcile() == 0


def test_the_overview_says_more_than_the_cap_instead_of_counting_everything(world, main_admin, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "cap", 3)
    for i in range(3):
        world.issue(f"t{i}")
    client = signed_in(main_admin)
    assert re.search(r"\b3 personal access tokens", client.get(OVERVIEW).content.decode())
    world.issue("t3")
    page = client.get(OVERVIEW).content.decode()
    assert "More than 3 personal access tokens" in page


def test_search_matches_the_start_of_a_name_a_prefix_or_an_owner(world, main_admin):
    other = User.objects.create(
        username="Zoe.Example", email="zoe@corp.example", tenant=world.tenant, can_create_pats=True
    )
    role_grant_add(user=other, role=world.reader, actor=None)
    world.issue("calendar sync", roles=("reader",))
    world.issue("zoe's job", roles=("reader",), owner=other)
    issued = world.issue("deploy", roles=("reader",))
    client = signed_in(main_admin)

    def found(term: str) -> set[str]:
        return {row.name for row in client.get(OVERVIEW, {"q": term}).context["cl"].result_list}

    assert found("calendar") == {"calendar sync"}
    assert found("sync") == set()  # a prefix search: the middle of a name does not match
    assert found("zoe.ex") == {"zoe's job"}  # usernames and emails ignore case
    assert found("ZOE@CORP") == {"zoe's job"}
    assert found(issued.token.display_prefix) == {"deploy"}


def test_sorting_breaks_ties_by_id_in_the_same_direction(world, main_admin):
    for owner_name in ("a", "b"):
        owner = User.objects.create(username=owner_name, email=f"{owner_name}@x.example", tenant=world.tenant)
        owner.can_create_pats = True
        owner.save()
        role_grant_add(user=owner, role=world.reader, actor=None)
        world.issue("same", roles=("reader",), owner=owner)
    client = signed_in(main_admin)
    changelist = client.get(OVERVIEW).context["cl"]
    name_column = changelist.list_display.index("token_name")
    ascending = client.get(OVERVIEW, {"o": f"{name_column}"}).context["cl"]
    descending = client.get(OVERVIEW, {"o": f"-{name_column}"}).context["cl"]
    ids = [token.pk for token in ascending.result_list]
    assert ids == sorted(ids)
    assert [token.pk for token in descending.result_list] == sorted(ids, reverse=True)


def test_bulk_revoke_refuses_more_than_it_can_show(world, user_admin, monkeypatch):
    from tokens import admin as token_admin

    monkeypatch.setattr(token_admin, "BULK_REVOKE_MAX", 2)
    ids = [world.issue(f"t{i}").token.pk for i in range(3)]
    client = signed_in(user_admin)
    page = client.post(
        OVERVIEW, {"action": "revoke_selected", "_selected_action": ids, "post": "yes"}, follow=True
    ).content.decode()
    assert "Select at most 2 tokens" in page
    assert not PersonalAccessToken.objects.filter(status="revoked").exists()


def test_the_dashboard_reads_stored_figures_above_the_live_limit(world, other_world, main_admin, user_admin, settings):
    world.issue("a")
    other_world.issue("b")
    assert dashboard_figures_refresh() == 2
    settings.DASHBOARD_LIVE_LIMIT = 1
    world.issue("c")  # after the figures were stored
    stored = dashboard_figures(main_admin)
    assert stored.computed_at is not None
    assert dict(stored.by_status)["active"] == 2
    page = signed_in(main_admin).get("/admin/dashboard/").content.decode()
    assert "Figures as of" in page and "<title>active: 2</title>" in page
    # A tenant without stored figures yet is computed for the request.
    TenantTokenFigures.objects.filter(tenant=other_world.tenant).delete()
    assert dict(dashboard_figures(main_admin).by_status)["active"] == 2
    # A user administrator's figures come from their own tenant only.
    assert dict(dashboard_figures(user_admin).by_status)["active"] == 1
    settings.DASHBOARD_LIVE_LIMIT = 1000
    live = dashboard_figures(main_admin)
    assert live.computed_at is None and dict(live.by_status)["active"] == 3


def test_stored_figures_are_the_live_figures(every_status, other_world, main_admin):
    from tokens.models import TokenUsageDay

    other_world.issue("elsewhere")
    token = PersonalAccessToken.objects.get(name="active")
    TokenUsageDay.objects.create(token=token, day=timezone.now().date() - timedelta(days=1), count=7)
    now = timezone.now()
    live = tenant_figures(PersonalAccessToken.objects.all(), now)
    dashboard_figures_refresh(now)
    assert {row.tenant_id: row.figures for row in TenantTokenFigures.objects.all()} == live
    assert live[every_status.tenant.pk]["by_status"] == dict.fromkeys(STATUSES, 1)
    assert sum(live[every_status.tenant.pk]["use"].values()) == 7


INACTIVATING_UPDATES = {
    "owner deactivated": lambda w: User.objects.filter(pk=w.user.pk).update(is_active=False),
    "owner's right removed": lambda w: User.objects.filter(pk=w.user.pk).update(can_create_pats=False),
    "owner moved": lambda w: User.objects.filter(pk=w.user.pk).update(tenant=TenantFactory()),
    "application switched off": lambda w: TenantApplication.objects.filter(tenant=w.tenant).update(allows_pats=False),
    "role withdrawn": lambda w: Role.objects.filter(pk=w.writer.pk).update(pat_eligible=False),
    "role no longer held": lambda w: RoleGrant.objects.filter(user=w.user, role=w.writer).delete(),
    "no role left": lambda w: PersonalAccessToken.roles.through.objects.all().delete(),
}


@pytest.mark.parametrize("cause", INACTIVATING_UPDATES)
def test_the_reconciliation_agrees_with_the_rules_on_every_reason(world, cause):
    """Raw updates, so only the reconciliation (the rules' SQL twin) can see them."""
    world.issue("hit")
    INACTIVATING_UPDATES[cause](world)
    assert by_rules()[EffectiveStatus.INACTIVE] == {"hit"}
    assert inactive_marks_reconcile() == 1
    assert names(with_status(PersonalAccessToken.objects.all(), EffectiveStatus.INACTIVE)) == {"hit"}


def test_a_search_lists_its_newest_matches_up_to_its_own_cap(world, main_admin, monkeypatch):
    monkeypatch.setattr(IndexedSearchMixin, "search_list_cap", 2)
    cal = User.objects.create(username="cal", email="cal@corp.example", tenant=world.tenant, can_create_pats=True)
    role_grant_add(user=cal, role=world.reader, actor=None)
    world.issue("calendar 0", roles=("reader",))  # the oldest match: beyond the search's cap
    world.issue("nightly", roles=("reader",), owner=cal)  # matches "cal" through its owner
    world.issue("calendar 1", roles=("reader",))
    world.issue("calendar 2", roles=("reader",))
    client = signed_in(main_admin)

    response = client.get(OVERVIEW, {"q": "cal"})
    assert [token.name for token in response.context["cl"].result_list] == ["calendar 2", "calendar 1", "nightly"]
    assert "More than 2 personal access tokens" in response.content.decode()
    # Without a search, the list's own cap applies.
    assert re.search(r"\b4 personal access tokens", client.get(OVERVIEW).content.decode())


def test_a_column_that_is_not_sortable_cannot_be_sorted_through_the_url(world, main_admin):
    """Django sorts by any column named in ?o=; one left out of sortable_by has
    no index to sort a million tokens by."""
    client = signed_in(main_admin)
    changelist = client.get(OVERVIEW).context["cl"]
    application_column = changelist.list_display.index("application_and_permissions")
    assert "application_and_permissions" not in changelist.sortable_by
    sorted_by_url = client.get(OVERVIEW, {"o": f"{application_column}"}).context["cl"]
    assert sorted_by_url.queryset.query.order_by == changelist.queryset.query.order_by


def test_the_audit_trail_is_searched_by_token_and_by_actor_within_the_tenant(world, other_world, user_admin):
    """By the start of a token's name or display prefix, a token's id, or the
    start of the actor's username or email: each through an index."""
    deploy = world.issue("deploy job").token
    world.issue("calendar sync")
    other_world.issue("deploy elsewhere")  # another tenant's: never found by this administrator
    client = signed_in(user_admin)

    def found(term: str) -> set[tuple[str, str]]:
        events = client.get(EVENTS, {"q": term}).context["cl"].result_list
        return {(event.token.name, event.actor_label) for event in events}

    assert found("deploy") == {("deploy job", "acme-user")}
    assert found(deploy.display_prefix) == {("deploy job", "acme-user")}
    assert found(str(deploy.pk)) == {("deploy job", "acme-user")}
    assert found("ACME-US") == {("deploy job", "acme-user"), ("calendar sync", "acme-user")}
    assert found("globex-user") == set()  # other tenants' users are not looked up
    assert found("sync") == set()  # a prefix search: the middle of a name does not match


def test_the_audit_trail_is_sorted_only_by_time(world, main_admin):
    client = signed_in(main_admin)
    changelist = client.get(EVENTS).context["cl"]
    assert changelist.sortable_by == ["occurred"]
    action_column = changelist.list_display.index("action")
    assert client.get(EVENTS, {"o": str(action_column)}).context["cl"].queryset.query.order_by == (
        changelist.queryset.query.order_by
    )
    time_column = changelist.list_display.index("occurred")
    oldest_first = client.get(EVENTS, {"o": str(time_column)}).context["cl"].queryset.query.order_by
    assert list(oldest_first) == ["occurred_at", "id"]


def test_each_rows_link_opens_its_token_and_keeps_the_lists_filters(world, main_admin):
    first, second = world.issue("calendar 1").token, world.issue("calendar 2").token
    page = signed_in(main_admin).get(OVERVIEW, {"q": "calendar", "status": "active"}).content.decode()
    links = re.findall(r'<th class="field-token_name"><a href="([^"]+)"', page)
    filters = "_changelist_filters=q%3Dcalendar%26status%3Dactive"
    assert links == [f"{OVERVIEW}{second.pk}/change/?{filters}", f"{OVERVIEW}{first.pk}/change/?{filters}"]


@pytest.mark.parametrize("page", [OVERVIEW, EVENTS])
def test_a_searchs_query_count_does_not_grow_with_its_matches(world, main_admin, page, django_assert_max_num_queries):
    client = signed_in(main_admin)
    for i in range(2):
        world.issue(f"sync {i}")
    with django_assert_max_num_queries(25) as few:
        client.get(page, {"q": "sync"})
    for i in range(2, 30):
        world.issue(f"sync {i}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(page, {"q": "sync"})
    assert "sync 29" in response.content.decode()


def test_a_capped_list_pages_only_up_to_its_cap(world, main_admin, monkeypatch):
    """The row past the cap only tells that there are more: no page shows it,
    and the search bar says "More than" like the paginator."""
    monkeypatch.setattr(IndexedSearchMixin, "search_list_cap", 4)
    monkeypatch.setattr(PersonalAccessTokenAdmin, "list_per_page", 2)
    for i in range(6):
        world.issue(f"deploy {i}")
    client = signed_in(main_admin)
    first = client.get(OVERVIEW, {"q": "deploy"})
    assert first.context["cl"].paginator.num_pages == 2
    assert "More than 4 results" in first.content.decode()
    last = client.get(OVERVIEW, {"q": "deploy", "p": "2"})
    assert [t.name for t in last.context["cl"].result_list] == ["deploy 3", "deploy 2"]
    assert client.get(OVERVIEW, {"q": "deploy", "p": "3"}).status_code == 302  # Django's "?e=1": no such page


def test_select_all_is_refused_when_the_search_left_matches_out(world, main_admin, monkeypatch):
    monkeypatch.setattr(IndexedSearchMixin, "search_list_cap", 2)
    ids = [world.issue(f"deploy {i}").token.pk for i in range(4)]
    page = (
        signed_in(main_admin)
        .post(
            f"{OVERVIEW}?q=deploy",
            {"action": "revoke_selected", "_selected_action": ids[-1:], "select_across": "1", "post": "yes"},
            follow=True,
        )
        .content.decode()
    )
    assert "matches more than 2 tokens" in page
    assert not PersonalAccessToken.objects.filter(status="revoked").exists()


def test_a_search_that_looks_at_only_some_owners_or_tokens_says_so(world, main_admin, monkeypatch):
    monkeypatch.setattr(IndexedSearchMixin, "search_list_cap", 2)
    for i in range(4):
        world.issue(f"deploy {i}")
    client = signed_in(main_admin)
    assert (
        "The search matches more than 2 tokens; it looks at 3 of them"
        in client.get(EVENTS, {"q": "deploy"}).content.decode()
    )
    assert "looks at" not in client.get(EVENTS, {"q": "deploy 1"}).content.decode()


def test_the_audit_export_holds_every_match_of_its_search(world, main_admin, monkeypatch):
    monkeypatch.setattr(IndexedSearchMixin, "search_list_cap", 2)
    for i in range(5):
        world.issue(f"deploy {i}")
    world.issue("other")
    export = signed_in(main_admin).get(f"{EVENTS}export.csv", {"q": "deploy"})
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))[1:]
    assert sorted(row[5] for row in rows) == [f"deploy {i}" for i in range(5)]


def test_a_user_administrator_finds_a_main_administrators_events_by_actor(world, other_world, user_admin):
    boss = UserFactory(username="boss", tenant=other_world.tenant)
    grant(boss, service_role(ServiceRole.MAIN_ADMINISTRATOR))
    token_revoke(token=world.issue("victim").token, actor=boss)
    other_world.issue("theirs")  # by globex-user, who is no main administrator: never found from acme
    client = signed_in(user_admin)
    found = client.get(EVENTS, {"q": "boss"}).context["cl"].result_list
    assert [(event.actor_label, event.token.name) for event in found] == [("boss", "victim")]
    assert not client.get(EVENTS, {"q": "globex"}).context["cl"].result_list
    assert not client.get(EVENTS, {"q": "١"}).context["cl"].result_list  # not an id: only ASCII digits are
