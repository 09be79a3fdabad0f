"""No secret in any log line, across the whole suite.

``tests/conftest.py`` runs every test with a ``SecretLogGuard``: a handler on
the root logger (and on every logger that does not propagate) at level 1, with
every logger lowered to level 1 and SQL logged with its parameters, so DEBUG
lines that production would only write with ``LOG_LEVEL=DEBUG`` are produced
and seen too. Each line is formatted as it is emitted (message, arguments,
traceback) and kept; at teardown the test fails if a line holds

- a secret issued during the run: recorded from the return values of the
  functions that create them (observed, never replaced): ``tokens.keys.generate``
  (every PAT, embedding token, integration credential, embed session and OAuth
  client secret is born there), ``tokens.oauth.token_exchange`` (JWT access
  tokens) and the passwords given to ``make_password``/``check_password``;
- or any string of our token shape (three letters, ``_``, 36 base62
  characters) whose checksum is valid, issued here or not.

Pre-existing handlers keep the levels they had, so the console and pytest's
report show what they showed before.
"""

import copy
import datetime
import logging
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from tokens import keys

# A token-shaped string standing alone: prefix, random part, checksum.
TOKEN_SHAPE = re.compile(
    rf"(?<![0-9A-Za-z])[a-z]{{3}}_[0-9A-Za-z]{{{keys.RANDOM_LENGTH + keys.CHECKSUM_LENGTH}}}(?![0-9A-Za-z])"
)
# Shorter passwords would match ordinary words; tests use longer ones.
MIN_PASSWORD_LENGTH = 8


def token_shaped_secrets(text: str) -> list[str]:
    """Return the strings of ``text`` that are well-formed secrets of ours (valid checksum)."""
    return [
        match
        for match in TOKEN_SHAPE.findall(text)
        if keys.checksum(match[: -keys.CHECKSUM_LENGTH]) == match[-keys.CHECKSUM_LENGTH :]
    ]


def _secret_needle(secret: str) -> str:
    """The part of a secret that must never be logged. A token's display
    prefix (``pat_AbC123``) is meant to be shown; what follows it is not."""
    if TOKEN_SHAPE.fullmatch(secret):
        return secret[keys.DISPLAY_PREFIX_LENGTH :]
    if secret.count(".") == 2:  # a JWT: its signature is what makes it usable
        return secret.rsplit(".", 1)[1]
    return secret


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        needle = _secret_needle(secret)
        text = text.replace(needle, "<SECRET>")
    for secret in token_shaped_secrets(text):
        text = text.replace(secret, f"{keys.display_prefix(secret)}…<SECRET>")
    return text


@dataclass(frozen=True)
class LogLine:
    logger: str
    level: str
    text: str  # the formatted message (with any traceback) and the repr of the arguments


@dataclass(frozen=True)
class Leak:
    line: LogLine
    why: str

    def describe(self, secrets: Iterable[str]) -> str:
        return f"{self.line.level} {self.line.logger}: {self.why}: {redact(self.line.text, secrets)[:500]}"


def find_leaks(lines: Iterable[LogLine], secrets: Iterable[str]) -> list[Leak]:
    """Return the lines that hold one of ``secrets`` or any well-formed token."""
    needles = {_secret_needle(secret): secret for secret in secrets if secret}
    leaks = []
    for line in lines:
        for needle, secret in needles.items():
            if needle in line.text:
                leaks.append(Leak(line, f"holds a secret issued in this test ({_kind(secret)})"))
                break
        else:
            shaped = token_shaped_secrets(line.text)
            if shaped:
                leaks.append(Leak(line, f"holds a well-formed {shaped[0][:3]}_ secret"))
    return leaks


def _kind(secret: str) -> str:
    if TOKEN_SHAPE.fullmatch(secret):
        return f"{secret[:3]}_ secret"
    return "access token" if secret.count(".") == 2 else "password"


# ---------------------------------------------------------------- the ledger of issued secrets


class SecretLedger:
    """Secrets issued while the suite runs. Those issued outside a test (by
    module- or session-scoped fixtures) stay on the ledger for every test."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ambient: list[str] = []
        self.current: list[str] | None = None

    def add(self, secret: object) -> None:
        if not isinstance(secret, str) or not secret:
            return
        with self._lock:
            (self.current if self.current is not None else self.ambient).append(secret)

    def begin(self) -> None:
        with self._lock:
            self.current = []

    def end(self) -> None:
        with self._lock:
            self.current = None

    def secrets(self) -> list[str]:
        with self._lock:
            return [*self.ambient, *(self.current or [])]


LEDGER = SecretLedger()


def _password(value: object) -> list[object]:
    return [value] if isinstance(value, str) and len(value) >= MIN_PASSWORD_LENGTH else []


# (module, function, what to record from (result, args, kwargs))
WATCHED: list[tuple[str, str, Callable[[object, tuple, dict], list[object]]]] = [
    ("tokens.keys", "generate", lambda result, args, kwargs: [result]),
    ("tokens.oauth", "token_exchange", lambda result, args, kwargs: [result.get("access_token")]),
    ("tokens.webhooks", "webhook_endpoint_create", lambda result, args, kwargs: [result.secret]),
    (
        "django.contrib.auth.hashers",
        "make_password",
        lambda result, args, kwargs: _password(args[0] if args else kwargs.get("password")),
    ),
    (
        "django.contrib.auth.hashers",
        "check_password",
        lambda result, args, kwargs: _password(args[0] if args else kwargs.get("password")),
    ),
]


def _recording(original: Callable, pick: Callable[[object, tuple, dict], list[object]]) -> Callable:
    def recorded(*args, **kwargs):
        result = original(*args, **kwargs)
        for secret in pick(result, args, kwargs):
            LEDGER.add(secret)
        return result

    recorded.__wrapped__ = original
    recorded.__name__ = getattr(original, "__name__", "recorded")
    recorded.__doc__ = original.__doc__
    recorded._records_secrets = True
    return recorded


def watch_secret_sources() -> None:
    """Record what the secret-creating functions return, everywhere they are
    bound: in their module and wherever ``from module import name`` copied them.
    Idempotent; the functions keep doing exactly what they did."""
    import importlib

    for module_name, name, pick in WATCHED:
        module = importlib.import_module(module_name)
        original = getattr(module, name)
        if getattr(original, "_records_secrets", False):
            continue
        wrapper = _recording(original, pick)
        for loaded in list(sys.modules.values()):
            namespace = getattr(loaded, "__dict__", None)
            if not isinstance(namespace, dict):
                continue
            for attribute, value in list(namespace.items()):
                if value is original:
                    setattr(loaded, attribute, wrapper)


# ---------------------------------------------------------------- the guard


class _Unloaded:
    """Stands for an argument whose text could run a query (a model whose
    ``__str__`` follows a relation, an unevaluated queryset): formatting a log
    line here must not add queries to a test that counts them. What it holds
    already (field values, cached rows) is still shown, so a secret in it would be seen."""

    def __init__(self, value: object) -> None:
        from django.db.models import Model

        if isinstance(value, Model):
            fields = {key: item for key, item in vars(value).items() if key != "_state"}
            self.text = f"<{type(value).__name__} {fields!r}>"
        else:
            cached = getattr(value, "_result_cache", None)
            self.text = f"<{type(value).__name__} {cached!r}>"

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


_PLAIN = (str, int, float, bool, type(None), bytes, Decimal, datetime.date, datetime.timedelta, uuid.UUID)


def _is_plain(value: object) -> bool:
    return isinstance(value, _PLAIN) or (
        isinstance(value, tuple | list) and all(isinstance(item, _PLAIN) for item in value)
    )


def _without_queries(value: object) -> object:
    from django.db.models import Model, QuerySet

    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Model | QuerySet):
        return _Unloaded(value)
    if isinstance(value, tuple | list):
        if all(isinstance(item, _PLAIN) for item in value):
            return value  # SQL parameters, mostly: nothing to replace
        return type(value)(_without_queries(item) for item in value)
    if isinstance(value, dict):
        return {key: _without_queries(item) for key, item in value.items()}
    return value


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=1)
        self.lines: list[LogLine] = []
        self._formatter = logging.Formatter("%(message)s")
        self._busy = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._busy, "active", False):
            return  # a line logged while formatting another (say, SQL of a __str__): not the code's own
        self._busy.active = True
        try:
            self.lines.append(LogLine(record.name, record.levelname, self._text(record)))
        finally:
            self._busy.active = False

    def _text(self, record: logging.LogRecord) -> str:
        args = record.args
        if (
            isinstance(record.msg, str)
            and not record.exc_info
            and not record.stack_info
            and (not args or (isinstance(args, tuple) and all(_is_plain(arg) for arg in args)))
        ):
            # Strings and numbers (SQL and its parameters, mostly): the message holds them as they are.
            try:
                return record.getMessage()
            except Exception:  # noqa: BLE001 - a bad format string must not hide the arguments
                return f"{record.msg}\nargs={args!r}"
        record = copy.copy(record)
        record.msg, record.args = _without_queries(record.msg), _without_queries(args)
        try:
            text = self._formatter.format(record)  # with the traceback: an exception's message may hold a secret
        except Exception:  # noqa: BLE001 - a bad format string must not hide the arguments
            text = str(record.msg)
        try:
            return f"{text}\nargs={record.args!r}"
        except Exception:  # noqa: BLE001 - an argument that cannot be printed cannot leak through repr either
            return f"{text}\nargs=<unprintable>"


@dataclass
class SecretLogGuard:
    """Sees every log line of one test; ``verify`` fails the test on a leak."""

    recorder: _Recorder = field(default_factory=_Recorder)
    _restore: list[Callable[[], None]] = field(default_factory=list)

    @property
    def lines(self) -> list[LogLine]:
        return self.recorder.lines

    def start(self) -> None:
        LEDGER.begin()
        root = logging.getLogger()
        known = logging.root.manager.loggerDict.values()
        loggers = [root, *(item for item in known if isinstance(item, logging.Logger))]
        # Handlers already there keep emitting what they emitted before.
        for logger in loggers:
            threshold = logger.getEffectiveLevel()
            for handler in logger.handlers:
                if handler.level < threshold:
                    self._restore.append(lambda handler=handler, level=handler.level: handler.setLevel(level))
                    handler.setLevel(threshold)
        for logger in loggers:
            if logger.level != 1 and (logger is root or logger.level != logging.NOTSET):
                self._restore.append(lambda logger=logger, level=logger.level: logger.setLevel(level))
                logger.setLevel(1)
            if logger.disabled:
                self._restore.append(lambda logger=logger: setattr(logger, "disabled", True))
                logger.disabled = False
            if logger is root or not logger.propagate:
                logger.addHandler(self.recorder)
                self._restore.append(lambda logger=logger: logger.removeHandler(self.recorder))
        # SQL with its parameters, as DEBUG=1 with LOG_LEVEL=DEBUG logs it.
        from django.db import connection, reset_queries

        reset_queries()
        debug_cursor = connection.force_debug_cursor
        connection.force_debug_cursor = True
        self._restore.append(lambda: setattr(connection, "force_debug_cursor", debug_cursor))

    def stop(self) -> None:
        while self._restore:
            self._restore.pop()()
        LEDGER.end()

    def leaks(self) -> list[Leak]:
        return find_leaks(self.lines, LEDGER.secrets())

    def verify(self) -> None:
        import pytest

        leaks = self.leaks()
        if leaks:
            secrets = LEDGER.secrets()
            pytest.fail(
                f"{len(leaks)} log line(s) hold a secret:\n" + "\n".join(leak.describe(secrets) for leak in leaks[:10]),
                pytrace=False,
            )

    def forget(self) -> None:
        """Drop the lines seen so far (for a test that leaks on purpose)."""
        self.lines.clear()
