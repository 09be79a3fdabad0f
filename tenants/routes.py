"""An application's gateway rules: which permission a request needs.

A proxy in front of an application (nginx ``auth_request``, Traefik
``ForwardAuth``) asks the gateway about every request; the application's route
rules name the permissions it needs. Rules are tried in order and the first
whose method and path pattern match decides; when none matches, the
application's default (deny, or allow any valid token of the application).

The path is matched as the application will most likely read it: the query
is dropped, the path percent-decoded once, ``.`` and ``..`` segments resolved
and repeated slashes merged, so ``/public/..%2Fadmin`` is matched as
``/admin``. A path that cannot be read so (no leading slash, a NUL or a
backslash, undecodable bytes) matches no rule and is refused.
"""

import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

from django.core.exceptions import ValidationError
from django.core.validators import validate_domain_name

from core.text import PERMISSION_CODE

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ANY_METHOD = "*"
DENY, ALLOW = "deny", "allow"
MAX_RULES = 200
PATTERN = re.compile(r"/[A-Za-z0-9._~!$&'()+,;=:@%*/-]*", re.ASCII)


@dataclass(frozen=True)
class Rule:
    method: str
    path: str
    permissions: tuple[str, ...]
    number: int = 0  # its place in the list, from 1, for people reading a decision

    def matches(self, method: str, path: str) -> bool:
        return self.method in (ANY_METHOD, method) and _compiled(self.path).fullmatch(path) is not None


@dataclass(frozen=True)
class Decision:
    rule: Rule | None  # the rule that decided; None when the default did
    permissions: tuple[str, ...]  # what the request needs (all of them)
    refused: bool  # no rule matched and the default denies, or the path could not be read

    def missing(self, granted: frozenset[str]) -> tuple[str, ...]:
        return tuple(code for code in self.permissions if code not in granted)


def rules_of(rows) -> tuple[Rule, ...]:
    """One application's ``RouteRule`` rows, in their order, as the rules ``route_decide`` tries."""
    return tuple(Rule(row.method, row.path, tuple(row.permissions), number) for number, row in enumerate(rows, 1))


def route_decide(rules: tuple[Rule, ...], default: str, method: str, path: str | None) -> Decision:
    """What ``method path`` needs under ``rules`` (``path`` as ``path_normalized`` returns it)."""
    if path is not None:
        for rule in rules:
            if rule.matches(method, path):
                return Decision(rule, rule.permissions, refused=False)
    refused = path is None or default != ALLOW
    return Decision(None, (), refused=refused)


def path_normalized(uri: str) -> str | None:
    """The path of a request URI as the rules match it, or None if it cannot be read unambiguously."""
    path = uri.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        return None
    try:
        decoded = unquote(path, errors="strict")
    except UnicodeDecodeError:
        return None
    if "\x00" in decoded or "\\" in decoded:
        return None
    segments: list[str] = []
    for segment in decoded.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    trailing = "/" if decoded.endswith(("/", "/.", "/..")) and segments else ""
    return "/" + "/".join(segments) + trailing


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern:
    """``*`` is any text within one segment, ``**`` any text; a final ``/**`` also matches the path without it."""
    body, whole_below = (pattern[:-3], True) if pattern.endswith("/**") else (pattern, False)
    parts = re.split(r"(\*\*|\*)", body)
    regex = "".join({"**": ".*", "*": "[^/]*"}.get(part, re.escape(part)) for part in parts)
    return re.compile(regex + ("(?:/.*)?" if whole_below else ""))


# ---------------------------------------------------------------- validating what administrators enter


def rule_errors(method: str, path: str, permissions: object) -> dict[str, list[str]]:
    """The problems of one rule, by field (empty when it is valid)."""
    errors: dict[str, list[str]] = {}
    if method not in (ANY_METHOD, *METHODS):
        errors["method"] = [f"Use * or one of {', '.join(METHODS)}."]
    if not PATTERN.fullmatch(path or "") or "***" in path:
        errors["path"] = ["A path pattern starts with / and uses * (one segment) or ** (anything), e.g. /orders/**."]
    if not isinstance(permissions, list | tuple) or not all(
        isinstance(code, str) and PERMISSION_CODE.fullmatch(code) for code in permissions
    ):
        errors["permissions"] = ["Permission codes such as crm.orders.read, separated by spaces or commas."]
    return errors


def hosts_parsed(text: str) -> tuple[list[str], list[str]]:
    """Host names in ``text`` (one per line or comma), lower-cased, and the errors found."""
    hosts, errors = [], []
    for value in (part.strip().lower().rstrip(".") for line in text.splitlines() for part in line.split(",")):
        if not value:
            continue
        name, _, port = value.partition(":")
        try:
            validate_domain_name(name)
            valid = bool(name) and (not port or (port.isdigit() and 0 < int(port) < 65536))
        except ValidationError:
            valid = False
        if not valid:
            errors.append(f"“{value[:60]}” is not a host name (such as crm.example.com or crm.example.com:8443).")
        elif value not in hosts:
            hosts.append(value)
    return hosts, errors


def host_candidates(forwarded_host: str) -> tuple[str, ...]:
    """The names a request's ``X-Forwarded-Host`` may be configured under: with its port, then without."""
    host = forwarded_host.split(",", 1)[0].strip().lower().rstrip(".")
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return (host, name) if name != host else (host,)
