"""The gateway (forward authentication): route rules, answers, and the console that configures them."""

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from core.errors import ValidationFailed
from iam.models import AuditAction, AuditEvent, ServiceRole
from iam.tenancy import application_route_rules_set, application_update
from tenants.routes import ALLOW, Rule, path_normalized, route_decide
from tests.conftest import bearer
from tests.factories import administrative_pat
from tokens.services import token_revoke

pytestmark = pytest.mark.django_db

FORWARD = "/auth/forward"
ME = "/api/v1/me"
RULES = [
    {"method": "GET", "path": "/orders/**", "permissions": ["orders.read"]},
    {"method": "POST", "path": "/orders/**", "permissions": ["orders.write"]},
    {"method": "*", "path": "/health", "permissions": []},
    {"method": "*", "path": "/admin/**", "permissions": ["settings.manage"]},
]


def configure(world, app_admin, rules=RULES, hosts="crm.acme.example", default="deny"):
    application_update(
        application=world.application,
        changes={"gateway_hosts": hosts, "gateway_default": default},
        actor=app_admin,
    )
    application_route_rules_set(application=world.application, rules=rules, actor=app_admin)


def forward(client, method: str, uri: str, host: str = "crm.acme.example", **headers):
    return client.get(
        FORWARD,
        HTTP_X_FORWARDED_METHOD=method,
        HTTP_X_FORWARDED_URI=uri,
        HTTP_X_FORWARDED_HOST=host,
        **headers,
    )


# ---------------------------------------------------------------- the rules themselves


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("/orders/1?x=/admin", "/orders/1"),
        ("/public/..%2Fadmin", "/admin"),
        ("/public/../admin/", "/admin/"),
        ("//admin", "/admin"),
        ("/%61dmin/./users", "/admin/users"),
        ("/../../etc", "/etc"),
        ("/", "/"),
        ("/a%00b", None),
        ("/a\\b", None),
        ("/a%5Cb", None),
        ("/%ff", None),
        ("orders", None),
        ("http://evil.example/admin", None),
    ],
)
def test_paths_are_matched_as_the_application_reads_them(uri, path):
    assert path_normalized(uri) == path


def test_the_first_matching_rule_decides():
    rules = tuple(Rule(r["method"], r["path"], tuple(r["permissions"]), n) for n, r in enumerate(RULES, start=1))
    assert route_decide(rules, "deny", "GET", "/orders").rule.number == 1  # a final /** matches the path itself
    assert route_decide(rules, "deny", "GET", "/orders/7/lines").permissions == ("orders.read",)
    assert route_decide(rules, "deny", "POST", "/orders/7").permissions == ("orders.write",)
    assert route_decide(rules, "deny", "GET", "/ordersx").refused  # not below /orders
    assert route_decide(rules, "deny", "DELETE", "/orders/7").refused  # no rule for this method
    allowed = route_decide(rules, ALLOW, "DELETE", "/orders/7")
    assert not allowed.refused and allowed.rule is None and allowed.permissions == ()
    assert route_decide(rules, ALLOW, "GET", None).refused  # an unreadable path, even by default allow
    one = (Rule("GET", "/files/*", ("files.read",), 1),)
    assert route_decide(one, "deny", "GET", "/files/a").rule is not None
    assert route_decide(one, "deny", "GET", "/files/a/b").refused  # * stays within one segment


def test_rules_are_validated_and_replaced_whole_and_audited(world, app_admin):
    configure(world, app_admin)
    with pytest.raises(ValidationFailed) as refused:
        application_route_rules_set(
            application=world.application,
            rules=[*RULES, {"method": "FETCH", "path": "orders", "permissions": ["Orders"]}],
            actor=app_admin,
        )
    assert set(refused.value.fields) == {"rule 5 method", "rule 5 path", "rule 5 permissions"}
    assert world.application.route_rules.count() == len(RULES)  # nothing half-written
    event = AuditEvent.objects.filter(action=AuditAction.APPLICATION_ROUTES_CHANGED).get()
    old, new = event.changes["route_rules"]
    assert old == [] and new[0] == "GET /orders/** → orders.read" and new[2] == "* /health → any valid token"
    assert event.actor == app_admin


def test_a_host_names_one_application(world, other_world, app_admin):
    configure(world, app_admin)
    with pytest.raises(ValidationFailed) as refused:
        application_update(
            application=other_world.application, changes={"gateway_hosts": "CRM.acme.example."}, actor=app_admin
        )
    assert "already a host name of" in refused.value.fields["gateway_hosts"][0]


def test_only_application_administrators_configure_the_gateway(world, user_admin):
    with pytest.raises(Exception) as refused:
        application_route_rules_set(application=world.application, rules=RULES, actor=user_admin)
    assert getattr(refused.value, "code", "") == "not_application_admin"


# ---------------------------------------------------------------- the answers


def test_an_allowed_request_carries_who_is_asking(api, world, app_admin):
    configure(world, app_admin)
    issued = world.issue(roles=("reader",))
    response = forward(bearer(api, issued.plaintext), "GET", "/orders/42?page=2")
    assert response.status_code == 200, response.content
    assert response["X-Auth-User"] == world.user.username
    assert response["X-Auth-User-Id"] == str(world.user.pk)
    assert response["X-Auth-Email"] == world.user.email
    assert response["X-Auth-Tenant"] == world.tenant.slug
    assert response["X-Auth-Application"] == world.application.slug
    assert response["X-Auth-Token-Id"] == str(issued.token.pk)
    assert response["X-Auth-Permissions"] == "orders.read"
    assert response.json() == {"allowed": True, "application": world.application.slug, "rule": 1}


def test_a_missing_permission_is_named(api, world, app_admin):
    configure(world, app_admin)
    client = bearer(api, world.issue(roles=("reader",)).plaintext)
    response = forward(client, "POST", "/orders")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "missing_permission"
    assert response.json()["error"]["missing_permissions"] == ["orders.write"]
    assert "orders.write" in response.json()["error"]["message"]
    assert response["X-Auth-Missing-Permissions"] == "orders.write"
    assert "X-Auth-User" not in response


def test_default_deny_and_default_allow(api, world, app_admin):
    configure(world, app_admin)
    client = bearer(api, world.issue(roles=("reader",)).plaintext)
    assert forward(client, "GET", "/reports").json()["error"]["code"] == "route_not_allowed"
    assert forward(client, "GET", "/health").status_code == 200  # a rule with no permission: any valid token
    configure(world, app_admin, default="allow")
    assert forward(client, "GET", "/reports").status_code == 200


def test_a_path_cannot_dodge_its_rule(api, world, app_admin):
    # settings.manage is not PAT-eligible, so no token of this world can reach /admin however it spells it.
    configure(world, app_admin, default="allow")
    client = bearer(api, world.issue(roles=("reader", "writer")).plaintext)
    for uri in ("/admin", "/public/..%2Fadmin/users", "//admin/", "/%61dmin", "/./admin"):
        response = forward(client, "GET", uri)
        assert response.status_code == 403, uri
        assert response.json()["error"]["missing_permissions"] == ["settings.manage"]
    assert forward(client, "GET", "/a%00b").json()["error"]["code"] == "route_not_allowed"


def test_a_bad_token_gets_the_apis_answer(api, world, app_admin):
    configure(world, app_admin)
    for client in (api, bearer(api, "pat_" + "x" * 40), bearer(api, "nonsense")):
        gateway, me = forward(client, "GET", "/orders/1"), client.get(ME)
        assert gateway.status_code == me.status_code == 401
        assert gateway.json() == me.json()
        assert gateway["WWW-Authenticate"] == me["WWW-Authenticate"]


def test_a_revoked_token_is_refused_on_the_next_request(api, world, app_admin):
    configure(world, app_admin)
    issued = world.issue(roles=("reader",))
    client = bearer(api, issued.plaintext)
    assert forward(client, "GET", "/orders/1").status_code == 200
    token_revoke(token=issued.token, actor=None, actor_label="test")
    assert forward(client, "GET", "/orders/1").status_code == 401


def test_a_token_opens_only_its_own_application(api, world, other_world, app_admin, main_admin):
    configure(world, app_admin)
    application_update(
        application=other_world.application,
        changes={"gateway_hosts": "crm.other", "gateway_default": "allow"},
        actor=app_admin,
    )
    other = bearer(api, other_world.issue(roles=("reader",)).plaintext)
    response = forward(other, "GET", "/orders/1")
    assert response.status_code == 403 and response.json()["error"]["code"] == "wrong_application"
    assert forward(other, "GET", "/orders/1", host="crm.other").status_code == 200  # its own
    administrative = bearer(api, administrative_pat(main_admin, ServiceRole.MAIN_ADMINISTRATOR).plaintext)
    assert forward(administrative, "GET", "/health").json()["error"]["code"] == "wrong_application"


def test_the_application_by_header_or_host(api, world, other_world, app_admin):
    configure(world, app_admin)
    client = bearer(api, world.issue(roles=("reader",)).plaintext)
    assert forward(client, "GET", "/health", host="crm.acme.example:8443").status_code == 200  # port ignored
    assert forward(client, "GET", "/health", host="CRM.Acme.Example").status_code == 200
    assert forward(client, "GET", "/health", host="", HTTP_X_IAM_APPLICATION=world.application.slug).status_code == 200
    unknown = forward(client, "GET", "/health", host="elsewhere.example")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_application"
    assert forward(client, "GET", "/health", host="", HTTP_X_IAM_APPLICATION="nope").status_code == 404
    # Both named, and they disagree: a client's own header reached the gateway (a proxy misconfigured).
    application_update(application=other_world.application, changes={"gateway_hosts": "crm.other"}, actor=app_admin)
    conflicting = forward(client, "GET", "/health", host="crm.other", HTTP_X_IAM_APPLICATION=world.application.slug)
    assert conflicting.status_code == 400 and conflicting.json()["error"]["code"] == "gateway_request_conflicting"


def test_the_proxy_must_say_what_was_asked(api, world, app_admin):
    configure(world, app_admin)
    client = bearer(api, world.issue(roles=("reader",)).plaintext)
    response = client.get(FORWARD, HTTP_X_FORWARDED_HOST="crm.acme.example")
    assert response.status_code == 400 and response.json()["error"]["code"] == "gateway_request_incomplete"
    original = client.get(
        FORWARD, HTTP_X_ORIGINAL_METHOD="get", HTTP_X_ORIGINAL_URI="/orders/1", HTTP_X_FORWARDED_HOST="crm.acme.example"
    )
    assert original.status_code == 200  # nginx's customary names
    # A proxy that sets X-Original-URI but lets the client's X-Forwarded-Uri through: neither is believed.
    smuggled = client.get(
        FORWARD,
        HTTP_X_ORIGINAL_METHOD="GET",
        HTTP_X_ORIGINAL_URI="/admin/users",
        HTTP_X_FORWARDED_URI="/orders/1",
        HTTP_X_FORWARDED_HOST="crm.acme.example",
    )
    assert smuggled.status_code == 400 and smuggled.json()["error"]["code"] == "gateway_request_conflicting"


def test_the_clients_address_comes_from_a_trusted_proxy_only(api, world, app_admin):
    configure(world, app_admin)
    client = bearer(api, world.issue(roles=("reader",), allowed_networks=["10.0.0.0/8"]).plaintext)
    via_proxy = {"REMOTE_ADDR": "127.0.0.1"}
    assert forward(client, "GET", "/orders/1", HTTP_X_FORWARDED_FOR="10.1.2.3", **via_proxy).status_code == 200
    # The client's own X-Forwarded-For entries come first; the proxy appends the address it saw.
    spoofed = {"HTTP_X_FORWARDED_FOR": "10.1.2.3, 192.0.2.7", **via_proxy}
    assert forward(client, "GET", "/orders/1", **spoofed).status_code == 401
    direct = {"HTTP_X_FORWARDED_FOR": "10.1.2.3", "REMOTE_ADDR": "192.0.2.9"}
    assert forward(client, "GET", "/orders/1", **direct).status_code == 401  # not a trusted proxy: ignored


def test_uses_are_counted_as_on_the_api(api, world, app_admin):
    configure(world, app_admin)
    issued = world.issue(roles=("reader",))
    before = timezone.now()
    assert forward(bearer(api, issued.plaintext), "GET", "/orders/1", REMOTE_ADDR="127.0.0.1").status_code == 200
    issued.token.refresh_from_db()
    assert issued.token.last_used_at is not None and issued.token.last_used_at >= before.replace(microsecond=0)


# ---------------------------------------------------------------- the console


def _change_form(world, rules: list[tuple[str, str, str]], **fields) -> dict:
    """The application's change form as the browser posts it (its inlines' management forms included)."""
    application = world.application
    links = list(application.tenant_links.all())
    data = {
        "name": application.name,
        "slug": application.slug,
        "description": application.description,
        "gateway_hosts": fields.get("gateway_hosts", ""),
        "gateway_default": fields.get("gateway_default", "deny"),
        "tenant_links-TOTAL_FORMS": str(len(links)),
        "tenant_links-INITIAL_FORMS": str(len(links)),
        "route_rules-TOTAL_FORMS": str(len(rules)),
        "route_rules-INITIAL_FORMS": "0",
    }
    for index, link in enumerate(links):
        data[f"tenant_links-{index}-id"] = str(link.pk)
        data[f"tenant_links-{index}-application"] = str(application.pk)
        if link.allows_pats:
            data[f"tenant_links-{index}-allows_pats"] = "on"
    for index, (method, path, permissions) in enumerate(rules):
        data[f"route_rules-{index}-position"] = str(index + 1)
        data[f"route_rules-{index}-method"] = method
        data[f"route_rules-{index}-path"] = path
        data[f"route_rules-{index}-permissions"] = permissions
        data[f"route_rules-{index}-application"] = str(application.pk)
    return data


def test_application_administrators_set_rules_in_the_console(client, world, app_admin, user_admin):
    client.force_login(app_admin)
    url = f"/admin/tenants/application/{world.application.pk}/change/"
    assert client.get(url).status_code == 200
    data = _change_form(
        world,
        [("GET", "/orders/**", "orders.read"), ("POST", "/orders/**", "orders.write, orders.read")],
        gateway_hosts="crm.acme.example\nCRM2.acme.example",
    )
    response = client.post(url, data)
    assert response.status_code == 302, response.context["errors"] if response.context else response
    world.application.refresh_from_db()
    assert world.application.gateway_hosts == "crm.acme.example\ncrm2.acme.example"
    rules = [(r.method, r.path, r.permissions) for r in world.application.route_rules.all()]
    assert rules == [("GET", "/orders/**", ["orders.read"]), ("POST", "/orders/**", ["orders.write", "orders.read"])]
    assert AuditEvent.objects.filter(action=AuditAction.APPLICATION_ROUTES_CHANGED, actor=app_admin).count() == 1

    bad = client.post(url, _change_form(world, [("GET", "orders", "Orders!")]))
    assert bad.status_code == 200  # the form again, with what is wrong
    assert world.application.route_rules.count() == 2
    assert "A path pattern starts with /" in bad.content.decode()

    client.force_login(user_admin)
    assert client.get(url).status_code == 403
    assert client.get(f"/admin/tenants/application/{world.application.pk}/gateway-test/").status_code == 403


def test_the_console_tests_a_request(client, world, app_admin):
    configure(world, app_admin)
    client.force_login(app_admin)
    url = f"/admin/tenants/application/{world.application.pk}/gateway-test/"
    page = client.get(url).content.decode()
    assert "GET /orders/**" in page and "Test" in page
    allowed = client.get(url, {"method": "GET", "uri": "/orders/7", "permissions": "orders.read"}).content.decode()
    assert "rule 1" in allowed and "is let through (200)" in allowed
    refused = client.get(url, {"method": "POST", "uri": "/public/..%2Forders", "permissions": "orders.read"})
    text = refused.content.decode()
    assert "POST /orders" in text and "rule 2" in text and "it lacks <code>orders.write</code>" in text
    nothing = client.get(url, {"method": "DELETE", "uri": "/x", "permissions": ""}).content.decode()
    assert "no rule matches and the default denies" in nothing


def _exchanged_for(world, *audiences) -> str:
    from tests.tokens.api.test_oauth import exchange
    from tokens.oauth import oauth_client_create

    name = f"crm backend {len(audiences)}"
    client = oauth_client_create(application=world.application, name=name, actor=None, token_exchange=True)
    pat = world.issue(f"exchange me {len(audiences)}", roles=("reader",)).plaintext
    granted = exchange(APIClient(), client, pat, **({"audience": audiences} if audiences else {}))
    assert granted.status_code == 200, granted.content
    return granted.json()["access_token"]


def test_an_access_token_for_the_application_opens_its_gateway_only(api, world, other_world, app_admin):
    """Exchanged for the application's audience, an access token is the application's:
    its gateway takes it; this service's API and another application's gateway do not."""
    configure(world, app_admin)
    application_update(
        application=other_world.application,
        changes={"gateway_hosts": "crm.other", "gateway_default": "allow"},
        actor=app_admin,
    )
    for_application = bearer(api, _exchanged_for(world, f"urn:iam:application:{world.application.pk}"))
    response = forward(for_application, "GET", "/orders/1")
    assert response.status_code == 200, response.content
    assert response["X-Auth-Permissions"] == "orders.read"
    assert (
        forward(for_application, "GET", "/orders/1", HTTP_X_IAM_APPLICATION=world.application.slug).status_code == 200
    )
    assert for_application.get(ME).status_code == 401  # not for this service's API
    assert forward(for_application, "GET", "/orders/1", host="crm.other").status_code == 401  # not that application's
    # One for this service's API still works at the gateway, as a PAT does.
    assert forward(bearer(APIClient(), _exchanged_for(world)), "GET", "/orders/1").status_code == 200
