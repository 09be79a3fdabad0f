"""The identity-change hook: how tenancy and identity tell the layers above
them that a write may change what credentials can do, without importing them.

A service wraps such a write in ``identity_changing(...)``, inside its
transaction. Every registered watcher (the tokens app registers one at
start-up) looks at what the change can reach before the write and again
after it, in the same transaction, and reports what it did in consequence
(tokens that became inactive or active again, expiries brought within a
policy, permissions gained or lost). The service gets the report back; an
administrator's page collects every report of a request (``collecting_reports``)
to ask for confirmation before committing.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class ChangeKind(StrEnum):
    """The writes that may change what credentials can do."""

    PATS_SWITCH = "pats_switch"  # an application's tokens allowed or not in a tenant
    ROLE_ELIGIBILITY = "role_eligibility"  # a role made available for tokens or withdrawn
    ROLE_PERMISSIONS = "role_permissions"  # a role's permission codes
    GRANT_ADDED = "grant_added"
    GRANT_REMOVED = "grant_removed"
    PAT_RIGHT = "pat_right"  # a user's right to create and use tokens
    ACTIVATION = "activation"  # a user account activated or deactivated
    TENANT_MOVE = "tenant_move"  # a user moved to another tenant (their tokens stay in theirs)
    TENANT_POLICY = "tenant_policy"  # a tenant's settings (its maximum token lifetime…)


@dataclass(frozen=True)
class IdentityChange:
    """A write that may change what credentials can do.

    ``what`` names the kind of write; the ids say which tenant,
    application, role and user it reaches (None: not narrowed by that);
    ``actor`` is the administrator (None for an operator command) and
    ``cause`` the words the audit trail keeps.
    """

    what: ChangeKind
    cause: str
    actor: Any = None
    ip: str | None = None
    tenant_id: int | None = None
    application_id: int | None = None
    role_id: int | None = None
    user_id: int | None = None


class Effect(Protocol):
    """What a watcher did in consequence of a change."""

    tokens_affected: int  # how many credentials changed
    tokens_reactivated: int  # how many of them became usable again
    needs_confirmation: bool  # whether an administrator should be asked first


class Watcher(Protocol):
    def before(self, change: IdentityChange) -> Any:
        """Look at what ``change`` can reach, before the write; returns what ``after`` needs."""

    def after(self, change: IdentityChange, seen: Any) -> list[Effect]:
        """Act on and report what the write did to what was seen."""

    def confirmation(self, report: "ChangeReport", *, sees_tokens: bool) -> dict:
        """The confirmation page's context for this watcher's effects in
        ``report`` (counts only, unless the administrator ``sees_tokens``)."""


@dataclass
class ChangeReport:
    """Every effect of one change (or, collected, of a request's changes)."""

    effects: list = field(default_factory=list)

    @property
    def tokens_affected(self) -> int:
        return sum(effect.tokens_affected for effect in self.effects)

    @property
    def tokens_reactivated(self) -> int:
        return sum(effect.tokens_reactivated for effect in self.effects)

    @property
    def needs_confirmation(self) -> bool:
        return any(effect.needs_confirmation for effect in self.effects)

    def of_type(self, kind: type) -> list:
        return [effect for effect in self.effects if isinstance(effect, kind)]


_watchers: list[Watcher] = []
_collector: ContextVar[ChangeReport | None] = ContextVar("identity_change_reports", default=None)


def confirmation_context(report: ChangeReport, *, sees_tokens: bool) -> dict:
    """What every watcher has to say about ``report`` before it is confirmed."""
    context: dict = {}
    for watcher in _watchers:
        context.update(watcher.confirmation(report, sees_tokens=sees_tokens))
    return context


def watcher_register(watcher: Watcher) -> None:
    """Register a watcher (once, from an app's ``ready()``)."""
    if watcher not in _watchers:
        _watchers.append(watcher)


@contextmanager
def identity_changing(change: IdentityChange) -> Iterator[ChangeReport]:
    """Run the block (the write) between every watcher's look before and
    after it; the yielded report is filled when the block ends. Use inside
    the write's transaction: the watchers' own writes then commit or roll
    back with it."""
    seen = [(watcher, watcher.before(change)) for watcher in _watchers]
    report = ChangeReport()
    yield report
    for watcher, before in seen:
        report.effects.extend(watcher.after(change, before))
    collected = _collector.get()
    if collected is not None:
        collected.effects.extend(report.effects)


@contextmanager
def collecting_reports() -> Iterator[ChangeReport]:
    """Gather the reports of every change made inside the block (e.g. to ask
    an administrator before committing them)."""
    report = ChangeReport()
    reset = _collector.set(report)
    try:
        yield report
    finally:
        _collector.reset(reset)
