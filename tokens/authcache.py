"""The in-process cache of authenticated tokens, and its invalidation across processes.

Authenticating a token needs its row, its owner, its roles, the owner's grants
and the tenant's switches: a query (``tokens.lookup``) that costs more than
the rest of a request. Each process keeps what it loaded, keyed by the token's digest (or
an access token's ``jti``), so a steady stream of requests costs neither a
query nor a Redis round trip.

Every change to those facts is broadcast on a Redis channel. Each process
listens on a thread of its own that drops the entries the change names (each
entry is indexed under the token, owner, tenant, application and roles it was
built from, so this costs what it drops) and acknowledges; the change's
request waits for every acknowledgement (at most ``ACK_TIMEOUT``) before it
answers, so a revoke is refused by the very next request in every process.
A process trusts its cache only while its listener is subscribed: a lost connection empties it, so a change missed
during a Redis outage is never served from it. A change whose process could
not reach Redis while others could is kept in the database, in the change's
transaction, and relayed within seconds by a process that can
(``invalidations_relay``, on Celery beat). Without Redis nothing is cached.
An entry is reloaded after ``TOKEN_CACHE_SECONDS`` in any case: that bounds
only a change that bypassed the models (an SQL edit) or whose relay failed too.
"""

import dataclasses
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models.base import ModelState
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.utils import timezone

from core.redis import redis_client, redis_scripts_load
from iam.models import Role, RoleGrant, User
from tenants.models import Application, Tenant, TenantApplication
from tokens import usage
from tokens.models import OAuthClient, PendingInvalidation, PersonalAccessToken, RevokedAccessToken, TokenKind
from tokens.rules import RoleFacts, TokenFacts, TokenState, evaluate
from tokens.verification import Loaded

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "auth:invalidations"
ACK_TIMEOUT = 1.0  # seconds a change waits for every process to drop its entries
ALL = "*"
BEFORE_ANY_EXPIRY = datetime.min.replace(tzinfo=UTC)


# The rows an entry keeps, as plain tuples of their fields' values: a model
# instance costs several times its values, and every request gets instances of
# its own anyway. A tenant's and an application's rows are kept once for all
# the entries that share them, and so are equal roles.
_ROW_MODELS = (PersonalAccessToken, User, Tenant, Application)
_ATTNAMES = {model: tuple(field.attname for field in model._meta.concrete_fields) for model in _ROW_MODELS}
_shared_rows: dict[tuple[type, object], dict] = {}
_shared_roles: dict[RoleFacts, RoleFacts] = {}
_shared_states: dict[TokenState, TokenState] = {}
SHARED_LIMIT = 10_000  # values kept for sharing, per table (emptied when full: entries keep theirs)


def _kept(table: dict, value):
    """The one copy of ``value`` that every entry holding an equal value shares."""
    if len(table) >= SHARED_LIMIT:
        table.clear()
    return table.setdefault(value, value)


def _row(instance, shared: bool = False) -> tuple | dict | None:
    """The instance's values: a tuple, or for a row many entries share, one dict
    (copied per request, which is cheaper than building one)."""
    if instance is None:
        return None
    model, names = type(instance), _ATTNAMES[type(instance)]
    if not shared:
        return tuple(instance.__dict__[name] for name in names)
    fields = {name: instance.__dict__[name] for name in names}
    kept = _shared_rows.get((model, instance.pk))
    if kept == fields:
        return kept
    if len(_shared_rows) >= SHARED_LIMIT:
        _shared_rows.clear()
    _shared_rows[(model, instance.pk)] = fields
    return fields


def _instance(model, row: tuple | dict | None, alias: str):
    """A model instance of the row's values, as ``Model.from_db`` would make it, for one request."""
    if row is None:
        return None
    instance = model.__new__(model)
    fields = row.copy() if isinstance(row, dict) else dict(zip(_ATTNAMES[model], row, strict=True))
    fields["_state"] = state = ModelState()
    state.db, state.adding = alias, False
    instance.__dict__ = fields
    return instance


@dataclass(frozen=True, slots=True)
class Entry:
    rows: tuple  # the token's, its owner's, tenant's and application's values (see ``_row``)
    facts: TokenFacts
    claims: dict | None  # an access token's verified claims; None for a PAT (the bearer path caches nothing else)
    alias: str  # the database the rows were read from
    stale_after: float  # time.monotonic() after which the entry is reloaded
    # The rules read the time only to compare it with the expiry: until then
    # the state is the same at every request, so it is evaluated once.
    unexpired_state: TokenState

    @classmethod
    def of(cls, loaded: Loaded, stale_after: float) -> "Entry":
        token = loaded.token
        rows = (_row(token), _row(token.owner), _row(token.tenant, shared=True), _row(token.application, shared=True))
        facts = loaded.facts
        facts = dataclasses.replace(facts, roles=tuple(_kept(_shared_roles, role) for role in facts.roles))
        state = evaluate(facts, BEFORE_ANY_EXPIRY)
        state = _kept(_shared_states, state)
        return cls(rows, facts, loaded.claims, token._state.db, stale_after, state)

    @property
    def scopes(self) -> tuple[str, ...]:
        """Every invalidation scope (see ``cache_clear``) that names this entry."""
        token = self.rows[0]
        scopes = [f"token:{token[_TOKEN_ID]}", f"tenant:{token[_TOKEN_TENANT]}", f"user:{token[_TOKEN_OWNER]}"]
        scopes += [f"role:{role.id}" for role in self.facts.roles]
        if token[_TOKEN_APPLICATION] is not None:
            scopes.append(f"application:{token[_TOKEN_APPLICATION]}")
        if self.claims is not None:
            scopes += [f"jti:{self.claims.get('jti')}", f"client:{self.claims.get('client_id')}"]
        return tuple(scopes)

    def state(self, now) -> TokenState:
        return self.unexpired_state if now < self.facts.expires_at else evaluate(self.facts, now)

    def loaded(self) -> Loaded:
        """The credential as loaded, with instances of its own: a request may
        change them without changing what other requests see."""
        token, owner, tenant, application = (
            _instance(model, values, self.alias) for model, values in zip(_ROW_MODELS, self.rows, strict=True)
        )
        token._state.fields_cache = {"owner": owner, "tenant": tenant, "application": application}
        return Loaded(token, self.facts, claims=self.claims)


_TOKEN_ID, _TOKEN_TENANT, _TOKEN_OWNER, _TOKEN_APPLICATION = (
    _ATTNAMES[PersonalAccessToken].index(name) for name in ("id", "tenant_id", "owner_id", "application_id")
)


_entries: OrderedDict[str, Entry] = OrderedDict()
# scope -> the key of the entry it names, or a set of them when more than one
# (most scopes name one entry: a set for each would cost more than the entry's
# values), so an invalidation visits only those.
_named: dict[str, str | set[str]] = {}
_lock = threading.Lock()
# Counts every invalidation this process has seen, so a load that overlapped one is not stored.
_invalidations = 0
# Other per-process caches fed by the same invalidations (the gateway's route rules).
_clear_hooks: list[Callable[[str], None]] = []
_tick_hooks: list[Callable[[], None]] = []


def on_tick(hook: Callable[[], None]) -> None:
    """Call ``hook()`` from the listener about once a second (work that may wait that long)."""
    if hook not in _tick_hooks:
        _tick_hooks.append(hook)


def on_clear(hook: Callable[[str], None]) -> None:
    """Call ``hook(scope)`` on every invalidation this process hears (and when its cache is emptied)."""
    if hook not in _clear_hooks:
        _clear_hooks.append(hook)


def cache_enabled() -> bool:
    return bool(settings.REDIS_URL) and settings.TOKEN_CACHE_SECONDS > 0


def channel_of(client: redis.Redis) -> str:
    """The invalidation channel of the client's Redis database. Pub/Sub channels
    are shared by every database of a server, so two deployments (or a test run
    and a benchmark) on one server must not hear each other."""
    return f"{CHANNEL_PREFIX}:{client.connection_pool.connection_kwargs.get('db', 0)}"


def cache_trusted() -> bool:
    """Whether this process may serve and store entries now (its listener is subscribed)."""
    return _listening()


def cache_lookup(key: str) -> Entry | None:
    """The entry for ``key``, if the cache can be trusted now and the entry is young enough."""
    if not _listening():
        return None
    with _lock:
        entry = _entries.get(key)
        if entry is None:
            return None
        if entry.stale_after <= time.monotonic():
            _forget(key)
            return None
        _entries.move_to_end(key)
        return entry


def cache_mark() -> int | None:
    """Call before loading what will be stored; None if nothing may be stored."""
    if not _listening():
        return None
    return _invalidations


def cache_store(key: str, loaded: Loaded, mark: int | None) -> Entry:
    """Remember a freshly loaded credential, unless an invalidation arrived since ``mark``.

    A secret replaced by a regeneration is never remembered: its grace period
    ends to the second and its reuse after that is reported once, by the lookup.
    """
    entry = Entry.of(loaded, time.monotonic() + settings.TOKEN_CACHE_SECONDS)
    with _lock:
        if mark is not None and mark == _invalidations and loaded.rotated is None:
            if key in _entries:
                _forget(key)
            _entries[key] = entry
            for scope in entry.scopes:
                named = _named.setdefault(scope, key)
                if isinstance(named, set):
                    named.add(key)
                elif named != key:
                    _named[scope] = {named, key}
            while len(_entries) > settings.TOKEN_CACHE_SIZE:
                _forget(next(iter(_entries)))  # the least recently used
    return entry


def _forget(key: str) -> None:
    """Drop one entry and its names (the caller holds the lock)."""
    entry = _entries.pop(key)
    for scope in entry.scopes:
        named = _named.get(scope)
        if named == key:
            del _named[scope]
        elif isinstance(named, set):
            named.discard(key)
            if len(named) == 1:
                _named[scope] = named.pop()


def _keys_named(scope: str) -> list[str]:
    named = _named.get(scope)
    return [] if named is None else [named] if isinstance(named, str) else list(named)


def cache_clear(scope: str = ALL) -> None:
    """Forget the entries a change can affect, visiting only those: ``ALL``,
    ``token:<id>`` (the PAT and the access tokens exchanged for it),
    ``tenant:<id>``, ``user:<id>`` (the tokens of one owner), ``role:<id>``,
    ``application:<id>``, ``jti:<jti>`` (one access token) or
    ``client:<client_id>`` (the access tokens exchanged through one OAuth client)."""
    global _invalidations
    for hook in _clear_hooks:
        hook(scope)
    if scope == ALL:
        usage.usage_pushes_forget()  # a reconnection: Redis may have restarted empty
    with _lock:
        _invalidations += 1
        if scope == ALL:
            _entries.clear()
            _named.clear()
            _shared_rows.clear()
            _shared_roles.clear()
            _shared_states.clear()
            return
        for key in _keys_named(scope):
            _forget(key)


def cache_size() -> int:
    return len(_entries)


def wait_until_listening(timeout: float = 5.0) -> bool:
    """Start this process's listener and wait until it is subscribed (for tests and warm-up)."""
    return cache_enabled() and _listener()._subscribed.wait(timeout)


# ---------------------------------------------------------------- invalidation


def invalidate(scope: str) -> None:
    """Drop the cached entries ``scope`` names (see ``cache_clear``) in every
    process, now and again after commit."""
    if not settings.REDIS_URL:
        return
    broadcast(scope)
    # Again after commit: a process may have reloaded the old rows meanwhile.
    transaction.on_commit(lambda: broadcast(scope))


def broadcast(scope: str) -> bool:
    """Drop ``scope``'s entries here and in every listening process now (``ALL``
    after a change that bypassed the models, as ``manage.py token_cache_clear``
    does); False if Redis was out of reach and the change is kept for relaying."""
    cache_clear(scope)
    if _publish(scope):
        return True
    _broadcast_later(scope)
    return False


def _publish(scope: str) -> bool:
    """Tell every listening process to drop ``scope``'s entries and wait for
    their acknowledgements; False if Redis could not be reached."""
    nonce = secrets.token_hex(8)
    client = redis_client()
    try:
        channel = channel_of(client)
        listeners = client.publish(channel, f"{nonce} {scope}")
        deadline = time.monotonic() + ACK_TIMEOUT
        while listeners > 0 and time.monotonic() < deadline:
            wait = max(0.01, min(0.4, deadline - time.monotonic()))
            if client.blpop([f"{channel}:ack:{nonce}"], timeout=wait) is not None:
                listeners -= 1
        client.delete(f"{channel}:ack:{nonce}")
    except redis.RedisError:
        return False
    if listeners > 0:
        # Still subscribed, so they hear it (or lose the connection, and with it their cache).
        logger.error("%d process(es) did not confirm a token invalidation within %ss", listeners, ACK_TIMEOUT)
    return True


def _broadcast_later(scope: str) -> None:
    """Keep a change this process could not broadcast for ``invalidations_relay``:
    other processes may reach Redis and be serving the entries it names. In the
    change's transaction when there is one, so the change and the record stand or fall together."""
    logger.error("Redis unavailable: a token invalidation (%s) is kept for relaying", scope)
    try:
        with transaction.atomic():
            PendingInvalidation.objects.create(scope=scope, created_at=timezone.now())
    except DatabaseError:
        logger.exception("could not keep a token invalidation for relaying; entries expire after TOKEN_CACHE_SECONDS")


RELAY_BATCH = 500
RELAY_ALL_ABOVE = 50


def relay_horizon() -> timedelta:
    """How long a kept change is worth relaying: the cache's lifetime, and at
    least a day, in case the server processes run with a longer one than the worker."""
    return max(timedelta(days=1), timedelta(seconds=settings.TOKEN_CACHE_SECONDS))


def invalidations_relay() -> int:
    """Broadcast the changes other processes could not (run by Celery beat every
    few seconds, in a process that reaches Redis); the number of scopes relayed.

    A change older than ``relay_horizon()`` is dropped unbroadcast: every entry
    loaded before it has been reloaded since."""
    if not settings.REDIS_URL:
        return 0
    horizon = timezone.now() - relay_horizon()
    relayed = 0
    while pending := list(PendingInvalidation.objects.order_by("id")[:RELAY_BATCH]):
        scopes = list(dict.fromkeys(change.scope for change in pending if change.created_at > horizon))
        if len(scopes) > RELAY_ALL_ABOVE:
            scopes = [ALL]  # one clear rather than waiting for each scope's acknowledgements
        for scope in scopes:
            if not _publish(scope):
                return relayed  # still out of reach: the next run tries again
            relayed += 1
        PendingInvalidation.objects.filter(id__lte=pending[-1].id).delete()
    return relayed


class _Listener(threading.Thread):
    """Subscribes this process to the invalidations, drops entries and
    acknowledges; pushes the process's buffered usage counts once a second."""

    def __init__(self, url: str):
        super().__init__(name="auth-invalidations", daemon=True)
        self.url = url
        self._subscribed = threading.Event()

    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def current(self) -> bool:
        """Whether this is still the process's listener: one left behind by a
        changed Redis URL winds down and leaves the cache to its successor."""
        return _current is self and self.url == settings.REDIS_URL

    def run(self) -> None:
        while self.current():
            try:
                self._listen()
            except (redis.RedisError, OSError):
                pass
            finally:
                self._drop_subscription()
            time.sleep(0.2)

    def _listen(self) -> None:
        connection = redis.Redis.from_url(
            self.url, socket_timeout=5, socket_connect_timeout=0.5, health_check_interval=2
        )
        pubsub = connection.pubsub()
        try:
            channel = channel_of(connection)
            pubsub.subscribe(channel)
            # Only once Redis confirms the subscription is no change missed
            # (redis-py reports ``subscribed`` as soon as the command is sent).
            while (confirmation := pubsub.get_message(timeout=1.0)) is None or confirmation["type"] != "subscribe":
                if not self.current():
                    return
            cache_clear()  # whatever changed while we were not listening
            redis_scripts_load(connection)  # a Redis that restarted has none
            self._subscribed.set()
            while self.current():
                message = pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "message":
                    nonce, _, scope = message["data"].decode().partition(" ")
                    cache_clear(scope)
                    connection.rpush(f"{channel}:ack:{nonce}", 1)
                    connection.expire(f"{channel}:ack:{nonce}", 10)
                usage.usage_push(max_age=1.0)
                self._tick()
        finally:
            pubsub.close()
            connection.close()

    @staticmethod
    def _tick() -> None:
        for hook in _tick_hooks:
            try:
                hook()
            except Exception:  # the listener must keep listening whatever a hook does
                logger.exception("the token cache listener's periodic %s failed", hook.__name__)

    def _drop_subscription(self) -> None:
        self._subscribed.clear()
        if self.current():
            cache_clear()


_current: _Listener | None = None
_start_lock = threading.Lock()


def _listening() -> bool:
    """Whether this process's cache can be trusted: its listener is subscribed."""
    current = _current
    if current is not None and current.url == settings.REDIS_URL and current.subscribed():
        return settings.TOKEN_CACHE_SECONDS > 0
    return cache_enabled() and _listener().subscribed()


def _forget_listener_after_fork() -> None:
    global _current
    _current = None  # its thread stayed in the parent


os.register_at_fork(after_in_child=_forget_listener_after_fork)


def _listener() -> _Listener:
    """This process's listener, started on first use."""
    global _current
    with _start_lock:
        current = _current
        if current is None or not current.is_alive() or current.url != settings.REDIS_URL:
            current = _current = _Listener(settings.REDIS_URL)
            current.start()
        return current


# ---------------------------------------------------------------- what triggers an invalidation


def _scope(instance) -> str:
    """The cached entries a changed row can affect (see ``cache_clear``)."""
    if isinstance(instance, PersonalAccessToken):
        return f"token:{instance.pk}"
    if isinstance(instance, RevokedAccessToken):
        return f"jti:{instance.jti}"
    if isinstance(instance, OAuthClient):
        return f"client:{instance.client_id}"
    if isinstance(instance, TenantApplication):
        return f"tenant:{instance.tenant_id}"
    if isinstance(instance, Tenant):
        return f"tenant:{instance.pk}"
    if isinstance(instance, User):
        return f"user:{instance.pk}"
    if isinstance(instance, RoleGrant):
        return f"user:{instance.user_id}"  # only its holder's tokens read it
    if isinstance(instance, Role):
        return f"role:{instance.pk}"
    if isinstance(instance, Application):
        return f"application:{instance.pk}"
    return ALL


def _changed(sender, instance, created: bool = False, update_fields=None, **kwargs) -> None:
    if isinstance(instance, PersonalAccessToken) and instance.kind == TokenKind.EMBED:
        return  # embedding tokens are never cached
    if created and isinstance(instance, PersonalAccessToken | User | OAuthClient):
        return  # nothing can be cached for a row that did not exist
    if update_fields is not None and set(update_fields) <= BOOKKEEPING_FIELDS:
        return
    invalidate(_scope(instance))


def _roles_changed(sender, instance, action: str, **kwargs) -> None:
    if action in ("post_add", "post_remove", "post_clear"):
        _changed(sender, instance)


# Fields whose change cannot alter an authentication.
BOOKKEEPING_FIELDS = {"last_login", "last_used_at", "last_used_ip"}
WATCHED = (
    PersonalAccessToken,
    RevokedAccessToken,
    OAuthClient,
    User,
    Role,
    RoleGrant,
    Tenant,
    Application,
    TenantApplication,
)


def connect_invalidation() -> None:
    """Every model whose rows feed a cached entry invalidates when one changes."""
    for model in WATCHED:
        post_save.connect(_changed, sender=model, dispatch_uid=f"authcache-save-{model.__name__}")
        post_delete.connect(_changed, sender=model, dispatch_uid=f"authcache-delete-{model.__name__}")
    m2m_changed.connect(_roles_changed, sender=PersonalAccessToken.roles.through, dispatch_uid="authcache-roles")
