"""Templates fail loudly in tests.

Django renders a failed variable lookup (``{{ token.revoked_by.username }}``
when there is no ``revoked_by``) as an empty string, and raises only when the
failing variable is a filter's argument, which is how a page answered 500 in
production while every test passed. In tests, every failed lookup in one of
*our* templates (``templates/``) fails the test that rendered it, whether it
would have rendered as nothing or raised.

How: Django logs every failed lookup at DEBUG on ``django.template`` from
inside the lookup, so a handler there sees the rendering stack. It finds the
node being rendered (its template and line) and whether the lookup was made
by ``{% if %}``/``{% for %}``, where a missing value is a legitimate None
(Django resolves those with ``ignore_failures``). Django's own templates (the
admin's) rely on silent lookups and are left alone. Nothing about rendering
changes: ``string_if_invalid`` stays "" and the pages render as in production.
"""

import logging
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

OUR_TEMPLATES = str(Path(__file__).resolve().parent.parent / "templates")


@dataclass(frozen=True)
class FailedLookup:
    template: str
    line: int | None
    variable: str

    def describe(self) -> str:
        where = self.template.removeprefix(OUR_TEMPLATES + "/")
        return f"{where}:{self.line}: {{{{ {self.variable} }}}} cannot be resolved"


def _failed_lookup() -> FailedLookup | None:
    """The lookup that failed in one of our templates, from the rendering
    stack, or None (a Django template, or a lookup of ``if``/``for``)."""
    frame = sys._getframe(2)
    variable = None
    while frame is not None:
        name, owner = frame.f_code.co_name, frame.f_locals.get("self")
        kind = type(owner).__name__
        if name == "_resolve_lookup" and kind == "Variable" and variable is None:
            variable = owner
        elif name == "resolve" and kind == "FilterExpression" and variable is not None:
            if frame.f_locals.get("ignore_failures") and owner.var is variable:
                return None  # {% if x.y %}, {% for a in x.y %}: "not there" is an answer
        elif name == "render_annotated" and variable is not None:
            origin = getattr(owner, "origin", None)
            template = getattr(origin, "name", "") or ""
            if not str(template).startswith(OUR_TEMPLATES):
                return None
            token = getattr(owner, "token", None)
            return FailedLookup(str(template), getattr(token, "lineno", None), variable.var)
        frame = frame.f_back
    return None


class TemplateLookupGuard(logging.Handler):
    """Collects the failed lookups of our templates while a test runs."""

    def __init__(self) -> None:
        super().__init__(level=1)
        self._lock = threading.Lock()
        self.failures: list[FailedLookup] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not str(record.msg).startswith("Exception while resolving variable"):
            return
        failure = _failed_lookup()
        if failure is not None:
            with self._lock:
                self.failures.append(failure)

    def start(self) -> None:
        self.failures = []
        self._logger = logging.getLogger("django.template")
        self._level = self._logger.level
        if self._logger.getEffectiveLevel() > logging.DEBUG:
            self._logger.setLevel(logging.DEBUG)
        self._logger.addHandler(self)

    def stop(self) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)

    def verify(self) -> None:
        import pytest

        if self.failures:
            unique = list(dict.fromkeys(failure.describe() for failure in self.failures))
            pytest.fail("A template lookup failed:\n" + "\n".join(unique[:10]), pytrace=False)
