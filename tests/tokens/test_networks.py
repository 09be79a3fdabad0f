"""Network allowlists: a token's own CIDR ranges and its tenant's, enforced
where the token's user presents it, IPv4 and IPv6."""

import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from core.errors import ValidationFailed
from core.networks import address_within, networks_normalized
from core.ratelimit import rate_limit_count
from iam.models import AuditAction, AuditEvent, ServiceRole
from iam.tenancy import tenant_set_api_issuance, tenant_update
from tests.conftest import bearer
from tests.factories import administrative_pat
from tests.tokens.api.test_oauth import exchange
from tokens.models import PersonalAccessToken
from tokens.oauth import oauth_client_create
from tokens.signing import access_token_claims

pytestmark = pytest.mark.django_db

ME = "/api/v1/me"


def me_from(api, secret: str, ip: str, **headers):
    return api.get(ME, HTTP_AUTHORIZATION=f"Bearer {secret}", REMOTE_ADDR=ip, **headers)


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        (["10.0.0.0/8", " 2001:db8::/32 ", "10.0.0.0/8"], ["10.0.0.0/8", "2001:db8::/32"]),
        ("203.0.113.7\n198.51.100.0/24, ::1", ["203.0.113.7/32", "198.51.100.0/24", "::1/128"]),
        ([], []),
    ],
)
def test_ranges_are_normalised(given, normalized):
    assert networks_normalized(given) == (normalized, [])


@pytest.mark.parametrize("bad", [["10.0.0.1/8"], ["not-a-network"], ["10.0.0.0/33"], [7], "x", {"a": 1}])
def test_bad_ranges_are_refused_with_a_reason(bad):
    _, errors = networks_normalized(bad)
    assert errors


def test_addresses_are_matched_by_family_and_mapped_ipv4_counts_as_ipv4():
    networks = ["10.0.0.0/8", "2001:db8::/32"]
    assert address_within("10.1.2.3", networks) and address_within("2001:db8::1", networks)
    assert address_within("::ffff:10.9.9.9", networks)
    assert not address_within("11.0.0.1", networks) and not address_within("2001:db9::1", networks)
    assert not address_within(None, networks) and not address_within("garbage", networks)
    assert address_within(None, []) and address_within("11.0.0.1", [])


def test_a_token_works_only_from_its_networks_and_a_refusal_is_any_bad_tokens(
    api, world, django_capture_on_commit_callbacks
):
    issued = world.issue("office only", allowed_networks=["127.0.0.0/8", "2001:db8::/32"])
    assert issued.token.allowed_networks == ["127.0.0.0/8", "2001:db8::/32"]
    assert me_from(api, issued.plaintext, "127.0.0.1").status_code == 200
    assert me_from(api, issued.plaintext, "2001:db8::42").status_code == 200
    cache.clear()
    with django_capture_on_commit_callbacks(execute=True):
        outside = me_from(api, issued.plaintext, "203.0.113.9")
    unknown = me_from(api, "pat_" + "A" * 36, "203.0.113.9")
    assert outside.status_code == unknown.status_code == 401 and outside.json() == unknown.json()
    assert rate_limit_count("auth-failures:203.0.113.9", window=60) == 2  # both counted as failures
    assert me_from(api, issued.plaintext, "::1").status_code == 401  # IPv6 loopback is not 127.0.0.0/8
    # A forwarded-for header is not the client's address (the proxy sets REMOTE_ADDR: see the README).
    assert me_from(api, issued.plaintext, "203.0.113.9", HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 401
    token = PersonalAccessToken.objects.get(pk=issued.token.pk)
    assert token.last_refused_ip == "203.0.113.9" and token.last_refused_at is not None


def test_the_tenants_networks_bind_every_token_and_a_tokens_own_only_narrow_them(api, world, main_admin):
    before = world.issue("before the policy")
    tenant_update(tenant=world.tenant, changes={"allowed_networks": ["10.0.0.0/8"]}, actor=main_admin)
    event = AuditEvent.objects.get(action=AuditAction.TENANT_POLICY_CHANGED)
    assert event.changes == {"allowed_networks": [[], ["10.0.0.0/8"]]}
    world.tenant.refresh_from_db()
    assert me_from(api, before.plaintext, "10.20.30.40").status_code == 200
    assert me_from(api, before.plaintext, "127.0.0.1").status_code == 401
    with pytest.raises(ValidationFailed) as refused:
        world.issue("too wide", allowed_networks=["192.168.0.0/16"])
    assert "Outside your tenant's allowed networks" in refused.value.fields["allowed_networks"][0]
    assert not PersonalAccessToken.objects.filter(name="too wide").exists()
    narrow = world.issue("narrow", allowed_networks=["10.1.0.0/16"])
    assert me_from(api, narrow.plaintext, "10.1.2.3").status_code == 200
    assert me_from(api, narrow.plaintext, "10.2.0.1").status_code == 401  # in the tenant's, not the token's


def test_a_user_administrator_sets_their_tenants_networks_in_the_console(client, api, world, user_admin):
    from tests.console.forms import form_data

    issued = world.issue("sync")
    client.force_login(user_admin)
    path = f"/admin/tenants/tenant/{world.tenant.pk}/change/"
    form = form_data(client.get(path).content.decode(), "tenant_form")
    assert "slug" not in form  # the name and slug are the main administrators'
    form["allowed_networks"] = ["10.0.0.0/8\n2001:db8::/32"]
    assert client.post(path, form).status_code == 302
    world.tenant.refresh_from_db()
    assert world.tenant.allowed_networks == ["10.0.0.0/8", "2001:db8::/32"]
    assert me_from(api, issued.plaintext, "127.0.0.1").status_code == 401
    form["allowed_networks"] = ["10.0.0.1/8"]
    page = client.post(path, form)
    assert page.status_code == 200 and "host bits zero" in page.content.decode()


def test_exchange_and_introspection_are_not_bound_to_the_clients_address_and_carry_the_networks(api, world):
    client = oauth_client_create(application=world.application, name="crm", actor=None, token_exchange=True)
    issued = world.issue("user's laptop", allowed_networks=["198.51.100.0/24"])
    granted = exchange(api, client, issued.plaintext)  # from the test client's 127.0.0.1: the client's backend
    assert granted.status_code == 200
    claims = access_token_claims(granted.json()["access_token"])
    assert claims["allowed_networks"] == {"token": ["198.51.100.0/24"], "tenant": []}


def test_the_self_service_pages_and_the_management_api_set_networks(api, client, world, user_admin):
    client.force_login(world.user)
    page = client.get("/tokens/new/").content.decode()
    form_id = re.search(r'name="form_id" value="([^"]+)"', page).group(1)
    form = {
        "form_id": form_id,
        "application": str(world.application.pk),
        "name": "Printer",
        "expiry_preset": "30",
        "roles": [str(world.reader.pk)],
        "allowed_networks": "192.0.2.0/24\n2001:db8:1::/48",
    }
    assert client.post("/tokens/new/", form).status_code == 200
    token = PersonalAccessToken.objects.get(name="Printer")
    assert token.allowed_networks == ["192.0.2.0/24", "2001:db8:1::/48"]
    fresh = re.search(r'name="form_id" value="([^"]+)"', client.get("/tokens/new/").content.decode()).group(1)
    bad = client.post("/tokens/new/", {**form, "form_id": fresh, "name": "Bad", "allowed_networks": "192.0.2.1/24"})
    assert bad.status_code == 400 and "host bits zero" in bad.content.decode()
    assert "192.0.2.0/24" in client.get("/tokens/").content.decode()

    tenant_set_api_issuance(tenant=world.tenant, allowed=True, actor=user_admin)
    admin = bearer(api, administrative_pat(user_admin, ServiceRole.USER_ADMINISTRATOR).plaintext)
    body = {
        "name": "Scanner",
        "expiresAt": (timezone.now() + timedelta(days=30)).isoformat(),
        "applicationSlug": world.application.slug,
        "roles": ["reader"],
        "allowedNetworks": ["203.0.113.0/24"],
    }
    url = f"/api/v1/users/{world.user.pk}/personal-access-tokens"
    refused = admin.post(url, {**body, "allowedNetworks": ["203.0.113.1/24"]}, format="json")
    assert refused.status_code == 400 and "allowedNetworks" in refused.json()["error"]["fields"]
    created = admin.post(url, body, format="json")
    assert created.status_code == 201 and created.json()["allowedNetworks"] == ["203.0.113.0/24"]
    listed = {item["name"]: item for item in admin.get(url).json()}
    assert listed["Printer"]["allowedNetworks"] == ["192.0.2.0/24", "2001:db8:1::/48"]


def test_opening_an_embedded_application_is_bound_to_the_tenants_networks(api, world, credential, main_admin):
    tenant_update(tenant=world.tenant, changes={"allowed_networks": ["10.0.0.0/8"]}, actor=main_admin)
    body = {"userId": world.user.pk, "appSlug": world.application.slug, "sessionExpiry": 5, "patExpiry": 600}
    # The portal's server asks from wherever it runs: issuing is not bound, opening is.
    issued = api.post(
        "/api/ext/users/personal-access-token", body, format="json", HTTP_AUTHORIZATION=f"Basic {credential.plaintext}"
    )
    token = issued.json()["personalAccessToken"]
    url = f"/embed-apps/{world.application.pk}"
    assert api.get(url, {"personal-access-token": token}, REMOTE_ADDR="127.0.0.1").status_code == 401
    assert api.get(url, {"personal-access-token": token}, REMOTE_ADDR="10.4.5.6").status_code == 303
