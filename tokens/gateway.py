"""Forward authentication: may this token make this request to its application?

A reverse proxy in front of an application asks ``GET /auth/forward`` before
each request (nginx ``auth_request``, Traefik ``ForwardAuth``, Caddy
``forward_auth``). The token is verified by the one verification path with its
cache (``tokens.bearer``), exactly as on the API; then the application is found
(``X-IAM-Application``, else ``X-Forwarded-Host`` against its host names), the
token must be one of that application's, and the application's route rules
(``tenants.routes``) say which permissions the request needs.

The applications' host names and rules are kept per process while its token
cache is trusted, and dropped by the same invalidations (any change to an
application, its rules included, names ``application:<id>``); without Redis
they are read per request, like the tokens.
"""

import ipaddress
import threading
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest

from core.errors import DomainError, NotFound, NotPermitted
from core.networks import address_within
from core.permissions import missing_permission_refusal
from tenants.models import Application, RouteRule
from tenants.routes import Decision, Rule, host_candidates, path_normalized, route_decide, rules_of
from tokens import authcache
from tokens.signing import application_audience_of
from tokens.verification import TokenContext

METHOD_HEADERS = ("HTTP_X_FORWARDED_METHOD", "HTTP_X_ORIGINAL_METHOD")
URI_HEADERS = ("HTTP_X_FORWARDED_URI", "HTTP_X_ORIGINAL_URI")


@dataclass(frozen=True)
class Gateway:
    application_id: str
    slug: str
    name: str
    default: str
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Routes:
    by_id: dict[str, Gateway]
    by_slug: dict[str, str]
    by_host: dict[str, str]


class IncompleteRequest(DomainError):
    code = "gateway_request_incomplete"


@dataclass(frozen=True)
class Verdict:
    gateway: Gateway
    decision: Decision
    method: str
    path: str


def gateway_verdict(request: HttpRequest, context: TokenContext) -> Verdict:
    """Allow the proxied request, or raise IncompleteRequest (400), NotFound (404), NotPermitted or
    the API's missing-permission refusal (403)."""
    method = _one_header(request, METHOD_HEADERS).upper()
    uri = _one_header(request, URI_HEADERS)
    if not method or not uri:
        raise IncompleteRequest(
            "The proxy must send the original request's method and URI "
            "(X-Forwarded-Method and X-Forwarded-Uri, or X-Original-Method and X-Original-URI)."
        )
    gateway = _gateway_of(request)
    token = context.token
    if str(token.application_id) != gateway.application_id:
        raise NotPermitted(
            "This token is not for the application behind this address: use a token created for it.",
            code="wrong_application",
        )
    path = path_normalized(uri)
    decision = route_decide(gateway.rules, gateway.default, method, path)
    if decision.refused:
        what = "this path cannot be read unambiguously" if path is None else "no route rule allows it"
        raise NotPermitted(f"{method} {path or uri[:200]} is refused: {what}.", code="route_not_allowed")
    missing = decision.missing(context.effective_permissions)
    if missing:
        raise missing_permission_refusal(list(missing), needed_by=f"{method} {path}")
    return Verdict(gateway, decision, method, path)


def identity_headers(context: TokenContext, verdict: Verdict) -> dict[str, str]:
    """What the proxy hands the application (it must overwrite whatever the client sent under these names)."""
    token, owner = context.token, context.token.owner
    return {
        "X-Auth-User": owner.username,
        "X-Auth-User-Id": str(owner.pk),
        "X-Auth-Email": owner.email,
        "X-Auth-Tenant": token.tenant.slug,
        "X-Auth-Application": verdict.gateway.slug,
        "X-Auth-Token-Id": str(token.pk),
        "X-Auth-Permissions": " ".join(sorted(context.effective_permissions)),
    }


def gateway_client_ip(request: HttpRequest) -> str | None:
    """The client's address: from a trusted proxy, the last ``X-Forwarded-For`` entry it did not add itself."""
    remote = request.META.get("REMOTE_ADDR") or None
    proxies = settings.GATEWAY_TRUSTED_PROXIES
    if not proxies or not address_within(remote, proxies):
        return remote
    for entry in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        entry = entry.strip()
        try:
            ipaddress.ip_address(entry)
        except ValueError:
            return remote  # a malformed list: trust nothing in it
        if not address_within(entry, proxies):
            return entry
    return remote


def _one_header(request: HttpRequest, names: tuple[str, ...]) -> str:
    """The value under either name. A proxy sets one of them; if the other arrives too and differs,
    the client sent it (the proxy did not clear it) and neither can be believed."""
    values = {value for name in names if (value := request.META.get(name, "").strip())}
    if len(values) > 1:
        raise IncompleteRequest(
            f"Both {' and '.join(name[5:].replace('_', '-').title() for name in names)} are present and differ.",
            code="gateway_request_conflicting",
        )
    return values.pop() if values else ""


def gateway_audience(request: HttpRequest) -> str | None:
    """The audience of the application this request is for, whose exchanged access
    tokens the gateway accepts; None when the request names none (the verdict then
    answers 400 or 404, after the token is checked as for the API)."""
    try:
        return application_audience_of(_gateway_of(request).application_id)
    except (IncompleteRequest, NotFound):
        return None


def _gateway_of(request: HttpRequest) -> Gateway:
    routes = routes_current()
    slug = request.META.get("HTTP_X_IAM_APPLICATION", "").strip()
    host = request.META.get("HTTP_X_FORWARDED_HOST", "")
    by_host = next((routes.by_host[name] for name in host_candidates(host) if name in routes.by_host), None)
    application_id = routes.by_slug.get(slug) if slug else by_host
    if slug and by_host is not None and by_host != application_id:
        # The proxy names one application and the host another: a client-sent header got through.
        raise IncompleteRequest(
            "X-IAM-Application and X-Forwarded-Host name different applications.", code="gateway_request_conflicting"
        )
    if application_id is None:
        raise NotFound(
            "No application is configured for this request: set its gateway host names in the console, "
            "or have the proxy send X-IAM-Application.",
            code="unknown_application",
        )
    return routes.by_id[application_id]


# ---------------------------------------------------------------- the applications' rules, per process

_routes: Routes | None = None
_generation = 0
_routes_lock = threading.Lock()


def _routes_clear(scope: str) -> None:
    global _routes, _generation
    if scope == authcache.ALL or scope.startswith("application:"):
        with _routes_lock:
            _routes, _generation = None, _generation + 1


authcache.on_clear(_routes_clear)


def routes_current() -> Routes:
    """Every application's gateway settings: from this process's copy while the token cache is trusted."""
    global _routes
    if not authcache.cache_trusted():
        return routes_load()
    with _routes_lock:
        routes, generation = _routes, _generation
    if routes is not None:
        return routes
    routes = routes_load()
    with _routes_lock:
        if generation == _generation:  # no change arrived while loading
            _routes = routes
    return routes


def routes_load() -> Routes:
    rows: dict[str, list[RouteRule]] = {}
    for row in RouteRule.objects.order_by("application_id", "position", "id"):
        rows.setdefault(str(row.application_id), []).append(row)
    by_id, by_slug, by_host = {}, {}, {}
    for application in Application.objects.only("id", "slug", "name", "gateway_default", "gateway_hosts"):
        key = str(application.pk)
        by_id[key] = Gateway(
            key, application.slug, application.name, application.gateway_default, rules_of(rows.get(key, ()))
        )
        by_slug[application.slug] = key
        for host in application.gateway_hosts.split():
            by_host.setdefault(host, key)
    return Routes(by_id, by_slug, by_host)
