"""A model-based test of the whole token lifecycle (Hypothesis stateful testing).

A small world (two tenants, three applications, roles, end users and every
administrator kind, an integration credential per tenant, an OAuth client
per application) is driven through random sequences of every operation that
exists, each through the entry point a person or an integration uses: the
self-service pages, the console's forms and actions (confirmations
included), the embedding, management, leak-report and OAuth APIs. Time
passes by moving every stored time back.

Beside the database, the test keeps a *model*: its own record of each
token's owner, roles, expiry and stored state, of who holds which role and
of every switch, from which it derives, by its own simple rules, what each
token's status must be. After **every step** it renders, for every actor who
may see them: each owner's token list (and create page when their rights
changed); the main administrator's overview unfiltered and with every status
filter; one more administrator's overview (in turn) with one more view (a kind,
a cause, an expiry or use filter, an ordering, a search) and one more list (the
audit trail, its CSV, the dashboard, the users); the pages of each token and
user whose state changed in the step (edit, delete, the console's token and
user pages; at most three, plus one other in turn; all of them at the end of a
sequence); ``/api/v1/me`` for every token and exchanged access token;
introspection and the management API for the changed ones and one in turn.

- no answer is a 5xx, and no template lookup fails (tests/template_guard.py);
- a token's status agrees everywhere with the model: the owner's list, the
  console's overview and token page, ``/api/v1/me`` (200 or 401, and the
  permissions), introspection's ``active``, the management API's ``status``;
  the console's status filters list exactly the tokens of that status.

A fixed *tour* runs every operation on every token state it applies to (and
fails if one was not reached: ``COVERAGE``, ``OTHER_OPERATIONS``); then
``LIFECYCLE_SEQUENCES`` random sequences of up to ``LIFECYCLE_STEPS`` steps
explore orders nobody wrote down, derandomized in CI (the same sequences every
run). A longer, random run: ``LIFECYCLE_SEQUENCES=100 LIFECYCLE_RANDOM=1
.venv/bin/python -m pytest tests/test_lifecycle_model.py -s``. A failing
sequence is shrunk and printed step by step (``state.act(...)``), with a
``@reproduce_failure`` blob to replay it.
"""

import base64
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlencode

import pytest
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.test import Client, TestCase, override_settings
from django.utils import timezone
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from iam.models import Role, ServiceRole, User
from iam.services import role_grant_remove
from tenants.models import Application, TenantApplication
from tests.console.forms import form_data
from tests.factories import RoleFactory, TenantApplicationFactory, TenantFactory, UserFactory, grant, service_role
from tokens.credentials import integration_credential_create
from tokens.models import EmbedSession, PersonalAccessToken
from tokens.oauth import oauth_client_create
from tokens.services import token_create

SEQUENCES = int(os.environ.get("LIFECYCLE_SEQUENCES", "3"))
STEPS = int(os.environ.get("LIFECYCLE_STEPS", "20"))
RANDOM = os.environ.get("LIFECYCLE_RANDOM") == "1"

STATES = ("active", "pending", "expired", "inactive", "denied", "revoked", "deleted")
# The operations on a token and the states they must each have met in a run.
COVERAGE = {
    "edit": {"active", "expired", "inactive", "revoked", "pending", "denied"},
    "delete": {"active", "expired", "inactive", "revoked", "pending", "denied"},
    "revoke": {"active", "expired", "inactive", "revoked", "pending", "denied"},
    "revoke_many": {"active", "inactive", "pending"},
    "leak_report": {"active", "expired", "inactive", "revoked", "pending"},
    "exchange": {"active", "expired", "inactive", "revoked", "pending", "denied"},
    "regenerate": {"active", "expired", "inactive", "revoked", "pending", "denied"},
    "approve": {"pending", "active", "denied"},  # refused on anything not pending
    "deny": {"pending", "expired"},
}
TOUR_STATES = ("active", "inactive", "expired", "pending", "denied", "revoked")
OTHER_OPERATIONS = {
    "create",
    "create_administrative",
    "embed_issue",
    "embed_replace",
    "revoke_access_token",
    "grant_remove",
    "grant_add",
    "role_eligibility",
    "role_permissions",
    "switch",
    "pat_right",
    "activation",
    "lifetime_policy",
    "time_passes",
    "reminders",
    "reuse_detected",
}
SEEN: Counter = Counter()
IDENTITY_CHANGES = [
    "grant_remove",
    "grant_add",
    "pat_right",
    "activation",
    "role_eligibility",
    "role_permissions",
    "switch",
    "lifetime_policy",
]

TENANTS = ("t1", "t2")
APPS = {"a1": ("t1", "t2"), "a2": ("t1", "t2"), "a3": ("t1",)}
ROLE_SPECS = {"read": True, "write": True, "own": False, "audit": True}  # code: PAT-eligible
NEEDS_APPROVAL = {"audit"}  # codes whose tokens wait for a user administrator
END_USERS = {"u1": "t1", "u2": "t1", "u3": "t2"}
OVERVIEW = "/admin/tokens/personalaccesstoken/"
OVERVIEW_VIEWS = [
    {},
    *({"kind": kind} for kind in ("personal", "administrative", "embed")),
    *({"revoked_because": cause} for cause in ("administrator", "integration", "leak_report", "embed_replaced")),
    {"expiring": "7"},
    {"expiring": "30"},
    {"use": "never"},
    {"use": "stale"},
    *({"o": f"{sign}{column}"} for column in (1, 2, 7, 8, 9) for sign in ("", "-")),
    {"q": "tok"},
    {"q": "u1"},
]


@dataclass
class ModelToken:
    pk: int
    owner: str
    tenant: str
    app: str | None  # None: administrative
    kind: str  # "personal" or "embed"
    roles: set[str]  # role keys "a1:read"
    expires_at: datetime
    secret: str
    stored: str = "active"  # active, revoked, deleted
    approval: str = ""  # "", pending, approved, denied
    cause: str = ""
    replaced: list[str] = field(default_factory=list)  # secrets regenerated away, their grace over


@dataclass
class ModelUser:
    key: str
    tenant: str
    active: bool = True
    can_create: bool = True
    roles: set[str] = field(default_factory=set)


@dataclass
class AccessToken:
    value: str
    pat: int
    app: str
    exp: datetime
    revoked: bool = False


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def index_of(text: str, size: int) -> int:
    """A position in a list of ``size`` that follows from ``text`` (drawn), the same on every replay."""
    return sum(map(ord, text)) % size


def rotated(items: list, by: int) -> list:
    return items[by % len(items) :] + items[: by % len(items)] if items else []


def body(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


class Lifecycle(RuleBasedStateMachine):
    """The product and its model, side by side."""

    def __init__(self):
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.step = 0

    def teardown(self):
        try:
            if getattr(self, "tokens", None):
                self.check(full=True)  # every object's pages, once more, at the end of the sequence
        finally:
            transaction.set_rollback(True)
            self._atomic.__exit__(None, None, None)

    # ------------------------------------------------------------ the world

    @initialize(start=st.integers(0, 22))
    def build_world(self, start):
        cache.clear()
        self.start = start  # where this sequence begins its round of operations on tokens
        self.tenants = {key: TenantFactory(slug=f"lc-{key}", name=f"Lifecycle {key}") for key in TENANTS}
        self.apps: dict[str, Application] = {}
        self.roles: dict[str, Role] = {}
        self.eligible: dict[str, bool] = {}
        self.permissions: dict[str, set[str]] = {}
        self.switches: dict[tuple[str, str], bool] = {}
        for app, tenants in APPS.items():
            link = TenantApplicationFactory(
                tenant=self.tenants[tenants[0]], application__slug=f"lc-{app}", application__name=f"App {app}"
            )
            self.apps[app] = link.application
            for tenant in tenants[1:]:
                TenantApplicationFactory(tenant=self.tenants[tenant], application=link.application)
            for tenant in tenants:
                self.switches[(tenant, app)] = True
            for code, eligible in ROLE_SPECS.items():
                key = f"{app}:{code}"
                self.roles[key] = RoleFactory(
                    application=link.application,
                    code=code,
                    name=f"{app} {code}",
                    permissions=[f"{app}.{code}"],
                    pat_eligible=eligible,
                    needs_token_approval=code in NEEDS_APPROVAL,
                )
                self.eligible[key], self.permissions[key] = eligible, {f"{app}.{code}"}
        self.users: dict[str, ModelUser] = {}
        self.accounts: dict[str, User] = {}
        for key, tenant in END_USERS.items():
            self.accounts[key] = UserFactory(username=key, tenant=self.tenants[tenant])
            held = {f"{app}:{code}" for app, tenants in APPS.items() if tenant in tenants for code in ROLE_SPECS}
            grant(self.accounts[key], *(self.roles[role] for role in held))
            self.users[key] = ModelUser(key, tenant, roles=held)
        admins = {
            "main": ("t1", [ServiceRole.MAIN_ADMINISTRATOR, ServiceRole.DEVELOPER]),
            "ua1": ("t1", [ServiceRole.USER_ADMINISTRATOR]),
            "ua2": ("t2", [ServiceRole.USER_ADMINISTRATOR]),
            "appadmin": ("t1", [ServiceRole.APPLICATION_ADMINISTRATOR]),
        }
        for key, (tenant, codes) in admins.items():
            self.accounts[key] = UserFactory(username=key, tenant=self.tenants[tenant])
            grant(self.accounts[key], *(service_role(code) for code in codes))
            self.users[key] = ModelUser(key, tenant, roles={f"iam:{code}" for code in codes})
        self.service_permissions = {
            f"iam:{role.code}": set(role.permissions) for role in Role.objects.filter(application=None)
        }
        self.service_eligible = {
            f"iam:{role.code}": role.pat_eligible for role in Role.objects.filter(application=None)
        }
        self.clients = {key: Client() for key in self.accounts}
        for key, client in self.clients.items():
            client.force_login(self.accounts[key])
        self.api = Client()
        self.credentials = {
            tenant: integration_credential_create(
                tenant=self.tenants[tenant], name="portal", actor=None, scopes=["embed", "tokens.manage"]
            ).plaintext
            for tenant in TENANTS
        }
        self.oauth = {}
        for app, application in self.apps.items():
            issued = oauth_client_create(application=application, name="backend", actor=None, token_exchange=True)
            self.oauth[app] = basic(issued.client.client_id, issued.secret)
        self.tokens: dict[int, ModelToken] = {}
        self.access_tokens: list[AccessToken] = []
        self.max_days = dict.fromkeys(TENANTS, 365)
        self.names = 0
        # Tokens to act on from the first step (made through the service, as
        # the pages do; the operations themselves go through the pages and APIs).
        for owner, tenant in END_USERS.items():
            for app, codes, days in (("a1", {"read"}, 3), ("a1", {"read", "write"}, 30), ("a2", {"write"}, 90)):
                self.names += 1
                issued = token_create(
                    owner=self.accounts[owner],
                    application=self.apps[app],
                    name=f"tok {self.names}",
                    expires_at=timezone.now() + timedelta(days=days),
                    role_codes=sorted(codes),
                )
                roles = {f"{app}:{code}" for code in codes}
                self.remember(
                    issued.token.pk, issued.plaintext, owner=owner, tenant=tenant, app=app, kind="personal", roles=roles
                )
        # And one already expired and one inactive each (its owner lost a role), so
        # every state can be acted on from the first step.
        for owner, tenant in END_USERS.items():
            self.names += 1
            issued = token_create(
                owner=self.accounts[owner],
                application=self.apps["a2"],
                name=f"tok {self.names}",
                expires_at=timezone.now() + timedelta(days=2),
                role_codes=["read"],
            )
            delta = timedelta(days=3)
            PersonalAccessToken.objects.filter(pk=issued.token.pk).update(
                created_at=F("created_at") - delta, expires_at=F("expires_at") - delta
            )
            self.remember(
                issued.token.pk,
                issued.plaintext,
                owner=owner,
                tenant=tenant,
                app="a2",
                kind="personal",
                roles={"a2:read"},
            )
        for owner in END_USERS:
            role_grant_remove(user=self.accounts[owner], role=self.roles["a2:write"], actor=None)
            self.users[owner].roles.discard("a2:write")
        self.seen_state: dict = {}
        self.seen_users: dict = {}
        self.local: Counter = Counter()

    # ------------------------------------------------------------ the model's rules

    def role_permissions_of(self, key: str) -> set[str]:
        return self.service_permissions.get(key) or self.permissions[key]

    def role_eligible(self, key: str) -> bool:
        return self.service_eligible[key] if key.startswith("iam:") else self.eligible[key]

    def expected(self, token: ModelToken, now: datetime | None = None) -> str:
        """The status the model says ``token`` has, by its own rules."""
        if token.stored in ("revoked", "deleted"):
            return token.stored
        if token.approval == "denied":
            return "denied"
        if token.expires_at <= (now or timezone.now()):
            return "expired"
        if token.approval == "pending":
            return "pending"
        owner = self.users[token.owner]
        usable = (
            owner.active
            and owner.can_create
            and owner.tenant == token.tenant
            and (token.app is None or self.switches.get((token.tenant, token.app), False))
            and token.roles
            and all(self.role_eligible(role) and role in owner.roles for role in token.roles)
        )
        return "active" if usable else "inactive"

    def expected_permissions(self, token: ModelToken) -> list[str]:
        return sorted(set().union(*(self.role_permissions_of(role) for role in token.roles)))

    def pick(self, operation: str, state: str, index: int, kinds=("personal",)) -> tuple[ModelToken | None, str]:
        """A token of ``kinds`` in ``state`` if there is one, else any that is
        not deleted; with the state it is in."""
        live = [t for t in self.tokens.values() if t.kind in kinds and t.stored != "deleted"]
        candidates = [t for t in live if self.expected(t) == state] or live
        if not candidates:
            return None, state
        token = candidates[index % len(candidates)]
        return token, self.expected(token)

    def remember(self, pk: int, secret: str, **facts) -> ModelToken:
        row = PersonalAccessToken.objects.get(pk=pk)
        token = ModelToken(pk=pk, secret=secret, expires_at=row.expires_at, **facts)
        self.tokens[pk] = token
        return token

    def confirmed(self, client: Client, url: str, data) -> None:
        """Post a console form; when it asks for a confirmation first, confirm."""
        response = client.post(url, data)
        assert response.status_code in (200, 302), (url, response.status_code)
        if response.status_code == 200:
            page = body(response)
            assert 'id="confirm-inactivation-form"' in page, f"{url} neither saved nor asked: {page[-1500:]}"
            response = client.post(url, form_data(page, "confirm-inactivation-form"))
            assert response.status_code == 302, (url, response.status_code)

    def admin_of(self, tenant: str, use_main: bool) -> str:
        return "main" if use_main else {"t1": "ua1", "t2": "ua2"}[tenant]

    # ------------------------------------------------------------ operations on tokens

    def create(self, owner, app, codes, days):
        SEEN["create"] += 1
        user, client = self.users[owner], self.clients[owner]
        page = client.get("/tokens/new/")
        if not user.active:
            assert page.status_code == 302
            return
        if not user.can_create:
            assert page.status_code == 403
            return
        assert page.status_code == 200
        text = body(page)
        form_id = re.search(r'name="form_id" value="([^"]+)"', text)
        roles = {f"{app}:{code}" for code in codes}
        self.names += 1
        name = f"tok {self.names}"
        data = {
            "form_id": form_id.group(1) if form_id else "",
            "application": str(self.apps[app].pk),
            "name": name,
            "expiry_preset": days,
            "roles": [str(self.roles[role].pk) for role in roles],
        }
        response = client.post("/tokens/new/", data)
        offered = self.switches.get((user.tenant, app)) and any(
            self.role_eligible(role) and role in user.roles for role in self.roles if role.startswith(f"{app}:")
        )
        allowed = offered and all(self.role_eligible(role) and role in user.roles for role in roles)
        if not allowed or int(days) > self.max_days[user.tenant]:
            assert response.status_code == 400, (owner, app, codes, response.status_code)
            assert not PersonalAccessToken.objects.filter(owner__username=owner, name=name).exists()
            return
        assert response.status_code == 200, body(response)[-2000:]
        secret = re.search(r"pat_[0-9A-Za-z]{36}", body(response)).group(0)
        pk = PersonalAccessToken.objects.get(owner__username=owner, name=name).pk
        token = self.remember(pk, secret, owner=owner, tenant=user.tenant, app=app, kind="personal", roles=roles)
        token.approval = "pending" if codes & NEEDS_APPROVAL else ""
        assert ("awaits" in body(response) or "needs a user administrator" in body(response)) == bool(token.approval)
        assert abs(token.expires_at - (timezone.now() + timedelta(days=int(days)))) < timedelta(minutes=1)

    def create_administrative(self):
        SEEN["create_administrative"] += 1
        client = self.clients["main"]
        text = body(client.get("/tokens/new/"))
        form_id = re.search(r'name="form_id" value="([^"]+)"', text).group(1)
        self.names += 1
        name = f"tok {self.names}"
        developer = service_role(ServiceRole.DEVELOPER)
        response = client.post(
            "/tokens/new/",
            {
                "form_id": form_id,
                "application": "administrative",
                "name": name,
                "expiry_preset": "7",
                "roles": [str(developer.pk)],
            },
        )
        if self.max_days["t1"] < 7:
            assert response.status_code == 400
            return
        assert response.status_code == 200, body(response)[-2000:]
        secret = re.search(r"pat_[0-9A-Za-z]{36}", body(response)).group(0)
        pk = PersonalAccessToken.objects.get(owner__username="main", name=name).pk
        self.remember(pk, secret, owner="main", tenant="t1", app=None, kind="personal", roles={"iam:developer"})

    def edit(self, state, index, rename, days):
        token, state = self.pick("edit", state, index)
        if token is None or not self.users[token.owner].active:
            return
        SEEN[("edit", state)] += 1
        client = self.clients[token.owner]
        page = client.get(f"/tokens/{token.pk}/edit/")
        if state in ("revoked", "denied"):
            assert page.status_code == 409
            return
        assert page.status_code == 200
        data = form_data(body(page), "token-edit-form")
        data = {key: value for key, value in data.items() if key in ("csrfmiddlewaretoken", "name", "expires_on")}
        owner = self.users[token.owner]
        # Keep only the roles the owner may still choose (what a person would tick).
        keep = {role for role in token.roles if self.role_eligible(role) and role in owner.roles}
        if not keep and token.app is not None:
            # What a person does when every role of the token is gone: tick one they still hold.
            offered = sorted(
                (
                    role
                    for role in owner.roles
                    if role.startswith(f"{token.app}:") and self.role_eligible(role) and role in self.roles
                ),
                key=lambda role: (role.split(":")[1] in NEEDS_APPROVAL, role),
            )
            keep = set(offered[:1])
        data["roles"] = [str(self.role_account(role).pk) for role in keep]
        if rename:
            self.names += 1
            data["name"] = [f"tok {self.names}"]
        new_expiry = None
        if state == "expired" or days <= self.max_days[token.tenant]:
            new_day = timezone.localtime(timezone.now()) + timedelta(days=min(days, self.max_days[token.tenant]))
            data["expires_on"] = [new_day.date().isoformat()]
            new_expiry = new_day
        response = client.post(f"/tokens/{token.pk}/edit/", data)
        if not keep:
            assert response.status_code == 400  # "Choose at least one permission"
            return
        assert response.status_code == 302, body(response)[-2000:]
        if any(role.split(":")[1] in NEEDS_APPROVAL for role in keep - token.roles):
            token.approval = "pending"  # an added role that needs approval: the whole token waits again
        elif token.approval == "pending" and not any(role.split(":")[1] in NEEDS_APPROVAL for role in keep):
            token.approval = ""
        token.roles = keep
        row = PersonalAccessToken.objects.get(pk=token.pk)
        if new_expiry is not None:
            assert abs(row.expires_at - new_expiry) < timedelta(minutes=1) or row.expires_at == token.expires_at
        token.expires_at = row.expires_at

    def regenerate(self, state, index, later):
        """The owner regenerates a token on its page; the old secret stops at
        once, or (``later``) in an hour."""
        token, state = self.pick("regenerate", state, index)
        if token is None or not self.users[token.owner].active:
            return
        SEEN[("regenerate", state)] += 1
        client, path = self.clients[token.owner], f"/tokens/{token.pk}/regenerate/"
        page = client.get(path)
        if token.stored == "revoked" or token.approval == "denied":
            assert page.status_code == 409
            return
        assert page.status_code == 200
        form_id = re.search(r'name="form_id" value="([^"]+)"', body(page)).group(1)
        response = client.post(path, {"form_id": form_id, "expiry_preset": "7", "grace": "3600" if later else "0"})
        if self.max_days[token.tenant] < 7:
            assert response.status_code == 400
            return
        assert response.status_code == 200, body(response)[-2000:]
        old, token.secret = token.secret, re.search(r"pat_[0-9A-Za-z]{36}", body(response)).group(0)
        if not later:
            token.replaced.append(old)
        token.expires_at = PersonalAccessToken.objects.get(pk=token.pk).expires_at
        assert abs(token.expires_at - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)

    def reuse(self, index):
        """Someone presents a secret regenerated away: refused, and the token ends (its new secret too)."""
        replaced = [(token, secret) for token in self.tokens.values() for secret in token.replaced]
        if not replaced:
            return
        SEEN["reuse_detected"] += 1
        token, secret = replaced[index % len(replaced)]
        with TestCase.captureOnCommitCallbacks(execute=True):  # the background task that ends it
            me = self.api.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {secret}")
        assert me.status_code == 401
        if token.stored == "active":
            token.stored, token.cause = "revoked", "reuse_detected"

    def role_account(self, key: str) -> Role:
        return self.roles.get(key) or service_role(key.removeprefix("iam:"))

    def delete(self, state, index, kind):
        token, state = self.pick("delete", state, index, kinds=(kind,))
        if token is None or not self.users[token.owner].active:
            return
        SEEN[("delete", state)] += 1
        response = self.clients[token.owner].post(f"/tokens/{token.pk}/delete/")
        assert response.status_code == 302
        token.stored = "deleted"

    def revoke(self, state, index, use_main):
        token, state = self.pick("revoke", state, index, kinds=("personal", "embed"))
        if token is None:
            return
        SEEN[("revoke", state)] += 1
        admin = self.admin_of(token.tenant, use_main)
        url = f"{OVERVIEW}{token.pk}/revoke/"
        response = self.clients[admin].post(url, {"reason": "lifecycle"})
        assert response.status_code == 302
        if token.stored == "active":
            token.stored, token.cause = "revoked", "administrator"
        # An administrator of the other tenant finds nothing there.
        other = "ua2" if token.tenant == "t1" else "ua1"
        assert self.clients[other].post(url).status_code == 404

    def decide(self, operation, state, index, use_main):
        """A user administrator (or the main one) approves or denies a token on its console page."""
        token, state = self.pick(operation, state, index)
        if token is None:
            return
        SEEN[(operation, state)] += 1
        admin = self.admin_of(token.tenant, use_main)
        url = f"{OVERVIEW}{token.pk}/decide/"
        page = self.clients[admin].get(url, {"decision": operation})
        assert page.status_code == 200
        response = self.clients[admin].post(url, {"decision": operation, "post": "yes", "note": "lifecycle"})
        assert response.status_code == 302
        if state == "pending":
            token.approval = "approved" if operation == "approve" else "denied"
        # The token's owner never decides; an administrator of the other tenant finds nothing.
        other = "ua2" if token.tenant == "t1" else "ua1"
        assert self.clients[other].post(url, {"decision": operation, "post": "yes"}).status_code == 404

    def revoke_many(self, state, count, use_main):
        candidates = [t for t in self.tokens.values() if self.expected(t) == state]
        if not candidates:
            return
        SEEN[("revoke_many", state)] += 1
        tenant = candidates[0].tenant
        chosen = [t for t in candidates if use_main or t.tenant == tenant][:count]
        ids = [str(token.pk) for token in chosen]
        response = self.clients[self.admin_of(tenant, use_main)].post(
            OVERVIEW, {"action": "revoke_selected", "_selected_action": ids, "post": "yes", "reason": "bulk"}
        )
        assert response.status_code == 302
        for token in chosen:
            token.stored, token.cause = "revoked", "administrator"

    def leak_report(self, state, index):
        token, state = self.pick("leak_report", state, index)
        if token is None:
            return
        SEEN[("leak_report", state)] += 1
        response = self.api.post("/api/v1/leaked-tokens", {"token": token.secret}, content_type="application/json")
        assert response.status_code == 202
        if token.stored == "active":
            token.stored, token.cause = "revoked", "leak_report"

    def embed_issue(self, owner, app, seconds):
        user = self.users[owner]
        previous = [t for t in self.tokens.values() if t.owner == owner and t.app == app and t.kind == "embed"]
        SEEN["embed_replace" if any(t.stored == "active" for t in previous) else "embed_issue"] += 1
        response = self.api.post(
            "/api/ext/users/personal-access-token",
            {"email": self.accounts[owner].email, "appSlug": f"lc-{app}", "sessionExpiry": 5, "patExpiry": seconds},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Basic {self.credentials[user.tenant]}",
        )
        held = {
            role
            for role in user.roles
            if role.startswith(f"{app}:") and self.role_eligible(role) and role.split(":")[1] not in NEEDS_APPROVAL
        }
        allowed = user.active and user.can_create and self.switches.get((user.tenant, app)) and held
        if not allowed:
            assert response.status_code == 403, response.content
            return
        if seconds > self.max_days[user.tenant] * 86400:
            assert response.status_code == 400
            return
        assert response.status_code == 201, response.content
        for token in previous:
            if token.stored == "active":
                token.stored, token.cause = "revoked", "embed_replaced"
        secret = response.json()["personalAccessToken"]
        pk = PersonalAccessToken.objects.get(display_prefix=secret[:10], owner__username=owner).pk
        self.remember(pk, secret, owner=owner, tenant=user.tenant, app=app, kind="embed", roles=held)

    def exchange(self, state, index):
        token, state = self.pick("exchange", state, index)
        if token is None or token.app is None:
            return
        SEEN[("exchange", state)] += 1
        response = self.api.post(
            "/oauth/token",
            urlencode(
                {
                    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                    "subject_token": token.secret,
                    "subject_token_type": "urn:iam:params:oauth:token-type:personal_access_token",
                }
            ),
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION=self.oauth[token.app],
        )
        if state != "active":
            assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
            return
        assert response.status_code == 200, response.content
        granted = response.json()
        assert sorted(granted["scope"].split()) == self.expected_permissions(token)
        exp = timezone.now() + timedelta(seconds=granted["expires_in"])
        self.access_tokens.append(AccessToken(granted["access_token"], token.pk, token.app, exp))
        if len(self.access_tokens) % 2 == 0:
            self.revoke_access_token(index)  # the client revokes one of its access tokens (RFC 7009)

    def revoke_access_token(self, index):
        live = [access for access in self.access_tokens if not access.revoked]
        if not live:
            return
        SEEN["revoke_access_token"] += 1
        access = live[index % len(live)]
        response = self.api.post(
            "/oauth/revoke",
            urlencode({"token": access.value}),
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION=self.oauth[access.app],
        )
        assert response.status_code == 200
        access.revoked = True

    # ------------------------------------------------------------ identity and policy changes

    # ------------------------------------------------------------ choosing what to do

    def candidates(self, operation: str, state: str) -> list:
        """The tokens ``operation`` can be tried on in ``state`` now."""
        if operation == "revoke_access_token":
            return [access for access in self.access_tokens if not access.revoked]
        kinds = ("personal", "embed") if operation in ("revoke", "revoke_many", "delete") else ("personal",)
        tokens = [
            t for t in self.tokens.values() if t.kind in kinds and t.stored != "deleted" and self.expected(t) == state
        ]
        if operation in ("edit", "delete", "regenerate"):
            tokens = [t for t in tokens if self.users[t.owner].active]
        if operation == "exchange":
            tokens = [t for t in tokens if t.app is not None]
        return tokens

    def token_operation(self, offset: int, index: int, flag: bool, days: int) -> None:
        """The operation and state met least often in this sequence among those
        possible now (ties broken from the sequence's ``start``), so a bounded
        run tries every operation on every state it applies to."""
        pairs = [(op, state) for op, states in COVERAGE.items() for state in sorted(states)]
        pairs.append(("revoke_access_token", "live"))
        feasible = [pair for pair in pairs if self.candidates(*pair)]
        if not feasible:
            return
        # An exchange comes first among equals: it makes access tokens to revoke.
        operation, state = min(
            feasible,
            key=lambda pair: (
                self.local[pair],
                pair != ("exchange", "active"),
                (pairs.index(pair) - self.start) % len(pairs),
            ),
        )
        self.local[(operation, state)] += 1
        if operation == "edit":
            self.edit(state, index, flag, days)
        elif operation == "delete":
            kinds = {t.kind for t in self.candidates("delete", state)}
            self.delete(state, index, "embed" if "embed" in kinds and (flag or kinds == {"embed"}) else "personal")
        elif operation == "revoke":
            self.revoke(state, index, flag)
        elif operation == "revoke_many":
            self.revoke_many(state, 1 + index % 3, flag)
        elif operation == "leak_report":
            self.leak_report(state, index)
        elif operation == "exchange":
            self.exchange(state, index)
        elif operation == "regenerate":
            self.regenerate(state, index, flag)
        elif operation in ("approve", "deny"):
            self.decide(operation, state, index, flag)
        else:
            self.revoke_access_token(index)

    # One rule, whose first choice is the action: Hypothesis's swarm testing
    # would otherwise leave whole rules out of most short sequences. Repeats
    # weigh the choice: half the steps act on a token.
    ACTIONS = [
        *["token"] * 14,
        *["create"] * 2,
        "create_administrative",
        *["embed"] * 3,
        *["identity"] * 8,
        *["time"] * 2,
        "reminders",
        "reuse",
    ]

    @rule(
        action=st.sampled_from(ACTIONS),
        owner=st.sampled_from(sorted(END_USERS)),
        app=st.sampled_from(sorted(APPS)),
        codes=st.sets(st.sampled_from(sorted(ROLE_SPECS)), min_size=1, max_size=2),
        preset=st.sampled_from(["7", "30", "365"]),
        offset=st.integers(0, 23),
        index=st.integers(0, 99),
        flag=st.booleans(),
        days=st.integers(1, 60),
        change=st.sampled_from(IDENTITY_CHANGES),
        tenant=st.sampled_from(TENANTS),
        policy_days=st.sampled_from([5, 30, 365]),
        shift=st.sampled_from([1, 6, 29]),
    )
    def act(self, action, owner, app, codes, preset, offset, index, flag, days, change, tenant, policy_days, shift):
        # The action furthest behind its share in this sequence, ties broken by
        # the one drawn: every kind of step comes up in a sequence of 25.
        share = Counter(self.ACTIONS)
        names = list(share)
        action = min(
            names,
            key=lambda name: (
                self.local[f"act:{name}"] / share[name],
                (names.index(name) - names.index(action)) % len(names),
            ),
        )
        self.local[f"act:{action}"] += 1
        if action == "token":
            self.token_operation(offset, index, flag, days)
        elif action == "create":
            self.create(owner, app, codes, preset)
        elif action == "create_administrative":
            self.create_administrative()
        elif action == "embed":
            # Half the time for a pair that has one already: a portal issues one per page load.
            live = sorted((t.owner, t.app) for t in self.tokens.values() if t.kind == "embed" and t.stored == "active")
            if (flag or self.local["act:embed"] % 2 == 0) and live:
                owner, app = live[index % len(live)]
            self.embed_issue(owner, app, 600 if index % 2 else 3600)
        elif action == "identity":
            self.change_identity_or_policy(change, owner, app, sorted(codes)[0], tenant, policy_days, flag)
        elif action == "time":
            self.time_passes(shift)
        elif action == "reuse":
            self.reuse(index)
        else:
            self.reminders()

    def change_identity_or_policy(self, change, user, app, code, tenant, days, flag):
        """An administrator's change in the console: a grant, a right, an
        account, a role, a switch or a tenant's lifetime policy."""
        # The change met least often in this sequence (ties broken by the one drawn).
        changes = IDENTITY_CHANGES
        change = min(
            changes, key=lambda name: (self.local[name], (changes.index(name) - changes.index(change)) % len(changes))
        )
        self.local[change] += 1
        if change in ("grant_remove", "grant_add"):
            model = self.users[user]
            held = sorted(key for key in model.roles if not key.startswith("iam:"))
            lacking = sorted(key for key in self.roles if key not in model.roles and model.tenant in APPS[key[:2]])
            pool = held if change == "grant_remove" else lacking
            if pool:
                app, code = pool[index_of(app + code, len(pool))].split(":")
            self.grant_change(user, code, app, flag)
        elif change == "pat_right":
            self.pat_right(user, flag)
        elif change == "activation":
            self.activation(user, flag)
        elif change == "role_eligibility":
            self.role_eligibility(app, "read" if code == "own" else code)
        elif change == "role_permissions":
            self.role_permissions(app, code, flag)
        elif change == "switch":
            self.switch(tenant, app)
        else:
            self.lifetime_policy(tenant, days)

    def user_form(self, admin: str, user: str) -> tuple[str, dict]:
        url = f"/admin/iam/user/{self.accounts[user].pk}/change/"
        page = self.clients[admin].get(url)
        assert page.status_code == 200
        return url, form_data(body(page), "user_form")

    def grant_change(self, user, role, app, use_main):
        model = self.users[user]
        key = f"{app}:{role}"
        if model.tenant not in APPS[app]:
            return
        admin = self.admin_of(model.tenant, use_main)
        url, data = self.user_form(admin, user)
        total = int(data["role_grants-TOTAL_FORMS"][0])
        role_pk = str(self.roles[key].pk)
        if key in model.roles:
            SEEN["grant_remove"] += 1
            index = next(i for i in range(total) if data.get(f"role_grants-{i}-role") == [role_pk])
            data[f"role_grants-{index}-DELETE"] = ["on"]
            model.roles.discard(key)
        else:
            SEEN["grant_add"] += 1
            data["role_grants-TOTAL_FORMS"] = [str(total + 1)]
            data[f"role_grants-{total}-role"] = [role_pk]
            data[f"role_grants-{total}-user"] = [str(self.accounts[user].pk)]
            model.roles.add(key)
        self.confirmed(self.clients[admin], url, data)

    def pat_right(self, user, use_main):
        SEEN["pat_right"] += 1
        model = self.users[user]
        url, data = self.user_form(self.admin_of(model.tenant, use_main), user)
        if model.can_create:
            data.pop("can_create_pats", None)
        else:
            data["can_create_pats"] = ["on"]
        model.can_create = not model.can_create
        self.confirmed(self.clients[self.admin_of(model.tenant, use_main)], url, data)

    def activation(self, user, use_main):
        SEEN["activation"] += 1
        model = self.users[user]
        admin = self.admin_of(model.tenant, use_main)
        url, data = self.user_form(admin, user)
        if model.active:
            data.pop("is_active", None)
        else:
            data["is_active"] = ["on"]
        model.active = not model.active
        self.confirmed(self.clients[admin], url, data)
        if model.active:
            self.clients[user].force_login(self.accounts[user])  # a deactivated account's session ended

    def role_eligibility(self, app, code):
        SEEN["role_eligibility"] += 1
        key = f"{app}:{code}"
        action = "set_unavailable_for_pat" if self.eligible[key] else "set_available_for_pat"
        self.confirmed(
            self.clients["appadmin"],
            "/admin/iam/role/",
            {"action": action, "_selected_action": [str(self.roles[key].pk)]},
        )
        self.eligible[key] = not self.eligible[key]

    def role_permissions(self, app, code, extra):
        SEEN["role_permissions"] += 1
        key = f"{app}:{code}"
        url = f"/admin/iam/role/{self.roles[key].pk}/change/"
        data = form_data(body(self.clients["appadmin"].get(url)), "role_form")
        permissions = {f"{app}.{code}"} | ({f"{app}.{code}.extra"} if extra else set())
        data["permissions"] = [str(sorted(permissions)).replace("'", '"')]
        self.confirmed(self.clients["appadmin"], url, data)
        self.permissions[key] = permissions

    def switch(self, tenant, app):
        if tenant not in APPS[app]:
            return
        SEEN["switch"] += 1
        link = TenantApplication.objects.get(tenant=self.tenants[tenant], application=self.apps[app])
        action = "disallow_pats" if self.switches[(tenant, app)] else "allow_pats"
        self.confirmed(
            self.clients["appadmin"],
            "/admin/tenants/tenantapplication/",
            {"action": action, "_selected_action": [str(link.pk)]},
        )
        self.switches[(tenant, app)] = not self.switches[(tenant, app)]

    def lifetime_policy(self, tenant, days):
        SEEN["lifetime_policy"] += 1
        url = f"/admin/tenants/tenant/{self.tenants[tenant].pk}/change/"
        data = form_data(body(self.clients["main"].get(url)), "tenant_form")
        data["pat_max_lifetime_days"] = [str(days)]
        self.confirmed(self.clients["main"], url, data)
        if days < self.max_days[tenant]:
            ceiling = timezone.now() + timedelta(days=days)
            for token in self.tokens.values():
                if token.tenant == tenant and token.stored == "active" and token.expires_at > ceiling:
                    stored = PersonalAccessToken.objects.get(pk=token.pk).expires_at
                    assert abs(stored - ceiling) < timedelta(minutes=1)
                    token.expires_at = stored
        self.max_days[tenant] = days

    def time_passes(self, days):
        """Every stored time moves back ``days``: as if that much time had passed."""
        SEEN["time_passes"] += 1
        delta = timedelta(days=days)
        PersonalAccessToken.objects.update(
            created_at=F("created_at") - delta,
            expires_at=F("expires_at") - delta,
            revoked_at=F("revoked_at") - delta,
            deleted_at=F("deleted_at") - delta,
            last_used_at=F("last_used_at") - delta,
        )
        EmbedSession.objects.update(expires_at=F("expires_at") - delta, created_at=F("created_at") - delta)
        for token in self.tokens.values():
            token.expires_at -= delta

    def reminders(self):
        """Beat's expiry-reminder sweep (in-process, as without Redis)."""
        SEEN["reminders"] += 1
        from tokens.tasks import sweep_expiry_reminders

        sweep_expiry_reminders()

    # ------------------------------------------------------------ after every step

    @invariant()
    def every_surface_works_and_agrees(self):
        if hasattr(self, "tokens"):
            self.check()

    def check(self, full: bool = False):
        """Every page of every actor and every API, against the model. The
        pages of one token or one user (its edit, delete and console pages)
        are rendered for each token and user whose state changed in this step
        and one more in turn, and for all of them at the end of a sequence."""
        self.step += 1
        self.full = full
        cache.clear()  # limits are not what this test is about
        now = timezone.now()
        expected = {pk: self.expected(token, now) for pk, token in self.tokens.items()}
        state = {
            pk: (expected[pk], token.stored, token.expires_at, frozenset(token.roles))
            for pk, token in self.tokens.items()
        }
        users = {key: (user.active, user.can_create, frozenset(user.roles)) for key, user in self.users.items()}
        pks, keys = sorted(self.tokens), sorted(self.accounts)
        changed = [pk for pk in pks if self.seen_state and self.seen_state.get(pk) != state[pk]]
        changed_users = [key for key in keys if self.seen_users and self.seen_users.get(key) != users[key]]
        # At most a few per step (in turn), to keep a step under a second; every one at the end.
        self.introspected = set(pks) if full else {*changed, pks[self.step % len(pks)]}
        self.pages_of = set(pks) if full else {*rotated(changed, self.step)[:2], pks[self.step % len(pks)]}
        self.user_pages_of = (
            set(keys) if full else {*rotated(changed_users, self.step)[:2], keys[self.step % len(keys)]}
        )
        self.seen_state, self.seen_users = state, users
        rows = PersonalAccessToken.objects.filter(pk__in=list(self.tokens))
        for row in rows:
            assert row.status == self.tokens[row.pk].stored, (row.pk, row.status, self.tokens[row.pk])
            assert row.approval == self.tokens[row.pk].approval, (row.pk, row.approval, self.tokens[row.pk])
            assert abs(row.expires_at - self.tokens[row.pk].expires_at) < timedelta(seconds=1)
            if row.status == "revoked":
                assert row.revocation_cause == self.tokens[row.pk].cause
        self.check_owners(expected)
        self.check_console(expected)
        self.check_apis(expected)

    def check_owners(self, expected):
        for key in END_USERS | {"main": "t1"}:
            client, user = self.clients[key], self.users[key]
            listing = client.get("/tokens/")
            if not user.active:
                assert listing.status_code == 302
                continue
            assert listing.status_code == 200
            shown = dict(re.findall(r'data-token-id="(\d+)" data-status="(\w+)"', body(listing)))
            mine = {pk for pk, token in self.tokens.items() if token.owner == key and token.stored != "deleted"}
            assert {int(pk) for pk in shown} == mine
            for pk, status in shown.items():
                assert status == expected[int(pk)], (key, pk, status, expected[int(pk)], self.tokens[int(pk)])
            if key in self.user_pages_of:
                assert client.get("/tokens/new/").status_code == (200 if user.can_create else 403)
            for pk in mine & self.pages_of:
                token = self.tokens[pk]
                editable = token.kind == "personal" and token.stored == "active" and token.approval != "denied"
                assert client.get(f"/tokens/{pk}/edit/").status_code == (200 if editable else 409)
                assert client.get(f"/tokens/{pk}/delete/").status_code == 200

    def check_console(self, expected):
        # Each admin's overview every step; one of them, in turn, also sees one
        # more view of it (a filter, an ordering, a search) and the other lists.
        view = OVERVIEW_VIEWS[self.step % len(OVERVIEW_VIEWS)]
        turn = ("main", "ua1", "ua2")[self.step % 3]
        for admin in dict.fromkeys(("main", turn)) if not self.full else ("main", "ua1", "ua2"):
            client = self.clients[admin]
            sees = {
                pk
                for pk, token in self.tokens.items()
                if admin == "main" or token.tenant == {"ua1": "t1", "ua2": "t2"}[admin]
            }
            # The main administrator's status filters every step: they must list exactly the tokens of that status.
            views = [{}, *({"status": status} for status in STATES)] if admin == "main" else [{}]
            if admin == turn and view not in views:
                views.append(view)
            for params in views:
                page = client.get(OVERVIEW, params)
                assert page.status_code == 200, (admin, params)
                listed = dict(re.findall(r'value="(\d+)" class="action-select".*?token-status-(\w+)', body(page), re.S))
                listed = {int(pk): status for pk, status in listed.items() if int(pk) in self.tokens}
                assert set(listed) <= sees
                for pk, status in listed.items():
                    assert status == expected[pk], (admin, params, pk, status, expected[pk])
                if set(params) == {"status"}:
                    wanted = {pk for pk in sees if expected[pk] == params["status"]}
                    assert set(listed) == wanted, (admin, params, listed, wanted)
                elif not params:
                    newest = PersonalAccessToken.objects.filter(pk__in=sees).order_by("-created_at", "-id")
                    assert set(listed) == set(newest.values_list("pk", flat=True)[:25])
            lists = (
                "/admin/iam/auditevent/",
                "/admin/iam/auditevent/export.csv",
                "/admin/dashboard/",
                "/admin/iam/user/",
            )
            for path in lists if self.full else (lists[self.step // 3 % len(lists)],) if admin == turn else ():
                assert client.get(path).status_code == 200, (admin, path)
        main = self.clients["main"]
        for pk in self.pages_of:
            page = main.get(f"{OVERVIEW}{pk}/change/")
            assert page.status_code == 200 and f"token-status-{expected[pk]}" in body(page)
        for key in self.user_pages_of:
            assert main.get(f"/admin/iam/user/{self.accounts[key].pk}/change/").status_code == 200, key
        assert self.clients["appadmin"].get(OVERVIEW).status_code == 403

    def check_apis(self, expected):
        now = timezone.now()
        for pk, token in self.tokens.items():
            me = self.api.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {token.secret}")
            usable = expected[pk] == "active" and token.kind == "personal"
            assert me.status_code == (200 if usable else 401), (pk, me.status_code, expected[pk], token)
            if usable:
                assert me.json()["permissions"] == self.expected_permissions(token)
            if token.app is not None and pk in self.introspected:
                answer = self.api.post(
                    "/oauth/introspect",
                    urlencode({"token": token.secret}),
                    content_type="application/x-www-form-urlencoded",
                    HTTP_AUTHORIZATION=self.oauth[token.app],
                ).json()
                assert answer["active"] is usable, (pk, answer, expected[pk])
        for access in self.access_tokens:
            usable = expected[access.pat] == "active" and not access.revoked and access.exp > now
            me = self.api.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {access.value}")
            assert me.status_code == (200 if usable else 401), (access.pat, expected[access.pat], access.revoked)
        users = END_USERS if self.full else dict([sorted(END_USERS.items())[self.step % len(END_USERS)]])
        for key, tenant in users.items():
            listed = self.api.get(
                f"/api/v1/users/{self.accounts[key].pk}/personal-access-tokens",
                HTTP_AUTHORIZATION=f"Basic {self.credentials[tenant]}",
            )
            assert listed.status_code == 200
            for item in listed.json():
                assert item["status"] == expected[item["id"]], (item, self.tokens[item["id"]])


UNLIMITED = {
    "AUTH_FAILURES_PER_MINUTE_PER_IP": 10**6,
    "TOKEN_CREATIONS_PER_MINUTE": 10**6,
    "LEAK_REPORTS_PER_MINUTE": 10**6,
    "REAUTHENTICATION_SECONDS": 10**6,  # sudo mode has its own tests
}


def coverage_report() -> tuple[dict, dict, list[str]]:
    counts = {operation: SEEN[operation] for operation in sorted(OTHER_OPERATIONS)}
    pairs = {
        f"{operation} on {state}": SEEN[(operation, state)]
        for operation, states in COVERAGE.items()
        for state in sorted(states)
    }
    return counts, pairs, [name for name, count in {**counts, **pairs}.items() if not count]


def supply(machine: Lifecycle, operation: str, state: str) -> bool:
    """Make a token that ``operation`` can act on in ``state``, through the
    same entry points (a new token, a grant removed, time passing), if none is
    left; return whether it did (a step to check)."""
    if machine.candidates(operation, state):
        return False
    if state == "revoked":
        machine.revoke("active", 0, True)
        return True
    waits = state in ("pending", "denied")
    owner, app, code = next(
        (key, role.split(":")[0], role.split(":")[1])
        for key, user in sorted(machine.users.items())
        if key in END_USERS and user.active and user.can_create
        for role in sorted(user.roles)
        if machine.role_eligible(role)
        and machine.switches.get((user.tenant, role.split(":")[0]))
        and (role.split(":")[1] in NEEDS_APPROVAL) == waits
    )
    machine.create(owner, app, {code}, "7")
    if state == "denied":
        machine.check()
        machine.decide("deny", "pending", 0, False)
    if state == "expired":
        machine.check()
        machine.time_passes(29)
    elif state == "inactive":
        machine.check()
        machine.grant_change(owner, code, app, False)
    return True


@pytest.mark.django_db
def test_a_tour_of_every_operation_on_every_state_keeps_every_surface_working_and_agreeing():
    """One fixed sequence that runs every operation, on every token state it
    applies to, each followed by the whole check: what the random sequences
    below may or may not reach, this always does."""
    SEEN.clear()
    with override_settings(**UNLIMITED):
        machine = Lifecycle()
        checked = 0
        try:
            machine.build_world(start=0)
            machine.check()
            steps = [
                lambda: machine.create("u1", "a1", {"read"}, "30"),
                lambda: machine.create("u2", "a3", {"own"}, "7"),  # refused: not available for tokens
                machine.create_administrative,
                lambda: machine.embed_issue("u1", "a1", 3600),
                lambda: machine.embed_issue("u1", "a1", 600),  # replaces the first
                lambda: machine.revoke("active", 0, False),  # now there is a revoked token to act on
            ]
            for operation, states in COVERAGE.items():
                for state in TOUR_STATES:
                    if state not in states:
                        continue
                    act = {
                        "edit": lambda state=state: machine.edit(state, 1, True, 20),
                        "delete": lambda state=state: machine.delete(state, 2, "personal"),
                        "revoke": lambda state=state: machine.revoke(state, 3, True),
                        "revoke_many": lambda state=state: machine.revoke_many(state, 2, True),
                        "leak_report": lambda state=state: machine.leak_report(state, 4),
                        "exchange": lambda state=state: machine.exchange(state, 5),
                        "regenerate": lambda state=state: machine.regenerate(state, 6, state == "inactive"),
                        "approve": lambda state=state: machine.decide("approve", state, 7, state == "active"),
                        "deny": lambda state=state: machine.decide("deny", state, 8, True),
                    }[operation]
                    steps.append(lambda operation=operation, state=state: supply(machine, operation, state))
                    steps.append(act)
            steps += [
                lambda: machine.exchange("active", 6),
                lambda: machine.revoke_access_token(0),
                lambda: machine.reuse(0),
                lambda: machine.grant_change("u1", "read", "a1", False),  # removed
                lambda: machine.grant_change("u1", "read", "a1", True),  # given back
                lambda: machine.pat_right("u2", False),
                lambda: machine.pat_right("u2", True),
                lambda: machine.activation("u3", False),
                lambda: machine.activation("u3", True),
                lambda: machine.role_eligibility("a1", "write"),
                lambda: machine.role_permissions("a1", "read", True),
                lambda: machine.switch("t1", "a2"),
                lambda: machine.lifetime_policy("t1", 30),
                lambda: machine.time_passes(29),
                machine.reminders,
            ]
            for step in steps:
                if step() is not False:  # every step but a supply that had nothing to do
                    machine.check()
                    checked += 1
        finally:
            machine.teardown()
    counts, pairs, missing = coverage_report()
    print(f"\nlifecycle tour: {checked} steps", counts, pairs)
    assert not missing, f"never exercised: {missing}"


@pytest.mark.django_db
def test_every_sequence_of_operations_keeps_every_surface_working_and_agreeing():
    SEEN.clear()
    with override_settings(**UNLIMITED):
        run_state_machine_as_test(
            Lifecycle,
            settings=settings(
                max_examples=SEQUENCES,
                stateful_step_count=STEPS,
                deadline=None,
                derandomize=not RANDOM,
                database=None,
                phases=[Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
                print_blob=True,
            ),
        )
    counts, pairs, _missing = coverage_report()
    print(f"\nlifecycle: {SEQUENCES} sequences, {sum(counts.values()) + sum(pairs.values())} operations", counts, pairs)
