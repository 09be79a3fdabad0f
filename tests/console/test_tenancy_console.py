"""The console's tenant and application switches: expiry reminders edited as
a list of days, and what switching PATs back on for an application reactivated."""

import pytest
from django.contrib.messages import get_messages

from core.errors import ValidationFailed
from iam.models import AuditAction, AuditEvent
from iam.tenancy import reminder_days_parsed, tenant_application_set_pats_allowed, tenant_update
from tenants.models import TenantApplication
from tests.console.forms import form_data
from tests.console.test_console import LISTS, signed_in
from tests.factories import UserFactory, grant
from tokens.rules import token_state

pytestmark = pytest.mark.django_db


def tenant_url(world) -> str:
    return f"/admin/tenants/tenant/{world.tenant.pk}/change/"


def said(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


# ---------------------------------------------------------------- expiry reminders


@pytest.mark.parametrize(
    ("typed", "days"),
    [("7, 1", [7, 1]), ("1,7", [7, 1]), (" 30 7  1 ", [30, 7, 1]), ("[14, 3]", [14, 3]), ("", []), ("365", [365])],
)
def test_reminder_days_are_read_as_whole_days_largest_first(typed, days):
    assert reminder_days_parsed(typed) == (days, [])


@pytest.mark.parametrize(
    ("typed", "error"),
    [
        ("0", "Enter whole days between 1 and 365, e.g. 7, 1 (not “0”)."),
        ("366, 7", "Enter whole days between 1 and 365, e.g. 7, 1 (not “366”)."),
        ("7.5", "Enter whole days between 1 and 365, e.g. 7, 1 (not “7.5”)."),
        ("-1, a week", "Enter whole days between 1 and 365, e.g. 7, 1 (not “-1”, “a”, “week”)."),
        ("٧", "Enter whole days between 1 and 365, e.g. 7, 1 (not “٧”)."),  # a digit, but not one people type here
        ("7, 1, 7", "Give each day once (7 is repeated)."),
    ],
)
def test_reminder_days_that_are_not_whole_days_in_range_each_once_are_refused(typed, error):
    assert reminder_days_parsed(typed)[1] == [error]


def test_the_tenant_page_edits_reminder_days_as_a_list_with_presets(world, main_admin):
    client = signed_in(main_admin)
    page = client.get(tenant_url(world)).content.decode()
    assert (
        'name="reminder_days" value="7, 1"' in page and "<textarea" not in page.split('name="reminder_days"')[0][-200:]
    )
    # Presets are buttons the page's own script (CSP 'self': no inline script) reveals and wires.
    assert '<script src="/static/js/reminder-days.js">' in page
    for label, days in [("None", ""), ("1 day", "1"), ("7 and 1 days", "7, 1"), ("30, 7 and 1 days", "30, 7, 1")]:
        assert f'data-days="{days}">{label}</button>' in page
    assert 'class="reminder-presets" data-for="id_reminder_days"' in page


def test_reminder_days_are_saved_sorted_through_the_audited_service(world, main_admin):
    client = signed_in(main_admin)
    data = form_data(client.get(tenant_url(world)).content.decode(), "tenant_form")
    data["reminder_days"] = ["1, 30, 7"]
    assert client.post(tenant_url(world), data).status_code == 302
    world.tenant.refresh_from_db()
    assert world.tenant.reminder_days == [30, 7, 1]
    event = AuditEvent.objects.get(action=AuditAction.TENANT_POLICY_CHANGED)
    assert event.actor == main_admin and event.changes == {"reminder_days": [[7, 1], [30, 7, 1]]}


def test_emptying_reminder_days_turns_reminders_off(world, user_admin):
    client = signed_in(user_admin)  # a tenant's own user administrator changes its policies
    data = form_data(client.get(tenant_url(world)).content.decode(), "tenant_form")
    data["reminder_days"] = [""]
    assert client.post(tenant_url(world), data).status_code == 302
    world.tenant.refresh_from_db()
    assert world.tenant.reminder_days == []


def test_the_same_days_in_another_order_are_no_change(world, main_admin):
    client = signed_in(main_admin)
    data = form_data(client.get(tenant_url(world)).content.decode(), "tenant_form")
    data["reminder_days"] = ["1 7"]
    assert client.post(tenant_url(world), data).status_code == 302
    assert not AuditEvent.objects.filter(action=AuditAction.TENANT_POLICY_CHANGED).exists()


def test_bad_reminder_days_are_shown_clearly_and_nothing_is_saved(world, main_admin):
    client = signed_in(main_admin)
    data = form_data(client.get(tenant_url(world)).content.decode(), "tenant_form")
    data["reminder_days"] = ["7, 400, 7"]
    response = client.post(tenant_url(world), data)
    page = response.content.decode()
    assert response.status_code == 200
    assert "Enter whole days between 1 and 365, e.g. 7, 1 (not “400”)." in page
    assert "Give each day once (7 is repeated)." in page
    assert 'value="7, 400, 7"' in page  # what was typed stays, to be corrected
    world.tenant.refresh_from_db()
    assert world.tenant.reminder_days == [7, 1]


@pytest.mark.parametrize("days", [[0], [7, 7], ["7"], [True], "7, 1", [400]])
def test_the_service_refuses_reminder_days_out_of_range_whoever_calls_it(world, main_admin, days):
    with pytest.raises(ValidationFailed):
        tenant_update(tenant=world.tenant, changes={"reminder_days": days}, actor=main_admin)
    world.tenant.refresh_from_db()
    assert world.tenant.reminder_days == [7, 1]


# ---------------------------------------------------------------- PATs switched back on


@pytest.fixture
def switched_off(world, app_admin):
    """Three of the user's tokens and one of a colleague's, made inactive by switching the application off."""
    colleague = UserFactory(username="acme-colleague", tenant=world.tenant)
    grant(colleague, world.reader)
    tokens = [world.issue(f"job {n}").token for n in range(3)]
    tokens.append(world.issue("colleague's", roles=("reader",), owner=colleague).token)
    tenant_application_set_pats_allowed(
        tenant=world.tenant, application=world.application, allowed=False, actor=app_admin
    )
    assert not any(token_state(token).is_usable for token in tokens)
    return tokens


def test_switching_pats_back_on_says_how_many_tokens_are_active_again(world, app_admin, switched_off):
    client = signed_in(app_admin)
    link = TenantApplication.objects.get(tenant=world.tenant, application=world.application)
    url = f"/admin/tenants/tenantapplication/{link.pk}/change/"
    data = form_data(client.get(url).content.decode(), "tenantapplication_form")
    data["allows_pats"] = ["on"]
    response = client.post(url, data)
    assert response.status_code == 302  # nothing to confirm: it only reactivates
    assert said(response) == ["PATs allowed again for acme CRM in Acme; 4 tokens are active again."]
    assert all(token_state(token).is_usable for token in switched_off)
    assert AuditEvent.objects.filter(action=AuditAction.TOKEN_REACTIVATED).count() == 4


def test_switching_pats_back_on_in_the_application_page_says_so_too(world, app_admin, switched_off):
    switched_off[0].roles.clear()  # inactive for another reason too: it stays inactive
    client = signed_in(app_admin)
    url = f"/admin/tenants/application/{world.application.pk}/change/"
    data = form_data(client.get(url).content.decode(), "application_form")
    data["tenant_links-0-allows_pats"] = ["on"]
    response = client.post(url, data)
    assert response.status_code == 302
    assert "PATs allowed again for acme CRM in Acme; 3 tokens are active again." in said(response)


def test_switching_pats_on_where_no_token_waited_says_so(world, app_admin):
    TenantApplication.objects.filter(tenant=world.tenant).update(allows_pats=False)
    client = signed_in(app_admin)
    link = TenantApplication.objects.get(tenant=world.tenant, application=world.application)
    response = client.post(LISTS["switches"], {"action": "allow_pats", "_selected_action": [link.pk]})
    assert said(response) == ["PATs allowed for acme CRM in Acme; no token became active again."]


def test_the_allow_action_sums_up_many_switches_in_one_message(world, other_world, app_admin, switched_off):
    TenantApplication.objects.filter(tenant=other_world.tenant).update(allows_pats=False)
    client = signed_in(app_admin)
    links = TenantApplication.objects.filter(tenant__in=[world.tenant, other_world.tenant])
    selected = {"action": "allow_pats", "_selected_action": [link.pk for link in links]}
    response = client.post(LISTS["switches"], selected, follow=True)  # the list shows (and uses up) the message
    assert said(response) == ["PATs allowed again for 2 applications in tenants; 4 tokens are active again."]
    again = client.post(LISTS["switches"], selected)
    assert said(again) == ["The selected applications already allow PATs in those tenants."]


def test_switching_pats_off_says_how_many_tokens_it_stopped_once_confirmed(world, app_admin):
    world.issue("nightly")
    client = signed_in(app_admin)
    link = TenantApplication.objects.get(tenant=world.tenant, application=world.application)
    warning = client.post(LISTS["switches"], {"action": "disallow_pats", "_selected_action": [link.pk]})
    assert warning.status_code == 200 and said(warning) == []  # rolled back: nothing said yet
    confirmed = client.post(LISTS["switches"], form_data(warning.content.decode(), "confirm-inactivation-form"))
    assert said(confirmed) == [
        "PATs no longer allowed for acme CRM in Acme; 1 token is inactive now. Its owner is told by e-mail."
    ]
