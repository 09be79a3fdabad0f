"""The uncached authentication lookup: a token and all its facts in one statement.

A token this process has not verified recently is looked up on the request
that carries it, so this is the cold path of every integration that calls now
and then. Django would build it as two queries with ``Exists`` subqueries, and
building them costs several times more than running them; so the statement is
written out once, from the models' own tables and columns, and run on the
database's cursor (on PostgreSQL, prepared once per connection: planning its
joins costs more than running them). Its values go through the fields' converters and its rows
become instances through ``Model.from_db``, as a queryset's do.

The statement returns one row per role of the token (one row with no role if
it has none, no row if there is no such token): the token, its owner, tenant
and application as they are now, whether the application allows tokens in the
tenant, and each role with whether the owner still holds it. Every join is on
a primary key or a unique index, so its cost does not grow with the tables.
"""

import weakref
from functools import cache

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.utils import CursorDebugWrapper

from iam.models import Role, RoleGrant, User
from tenants.models import Application, Tenant, TenantApplication
from tokens.models import PersonalAccessToken, RotatedSecret
from tokens.rules import RoleFacts, TokenFacts, facts_build

# The instances each row carries, with their aliases in the statement.
_INSTANCES = ((PersonalAccessToken, "t"), (User, "o"), (Tenant, "n"), (Application, "a"), (RotatedSecret, "s"))
_ROLE_FIELDS = ("id", "code", "name", "application_id", "pat_eligible", "permissions")


@cache
def lookup_sql(vendor: str, by: str, count: int = 1) -> str:
    """The statement for a token found by ``count`` candidate digests (``by="digest"``) or by id.

    By digest, the token is the one whose current secret it is or, failing
    that, the one it was before a rotation (with that ``RotatedSecret``):
    both are index lookups, so an unknown secret costs what a known one does.
    """
    q = connections[DEFAULT_DB_ALIAS].ops.quote_name

    def table(model) -> str:
        return q(model._meta.db_table)

    def column(alias: str, model, name: str) -> str:
        return f"{alias}.{q(model._meta.get_field(name).column)}"

    roles = PersonalAccessToken._meta.get_field("roles")
    link = roles.remote_field.through
    selected = [f"{alias}.{q(field.column)}" for model, alias in _INSTANCES for field in model._meta.concrete_fields]
    selected += [column("r", Role, name) for name in _ROLE_FIELDS]
    selected += [f"{column('g', RoleGrant, 'id')} IS NOT NULL", f"{column('ta', TenantApplication, 'id')} IS NOT NULL"]
    token = lambda name: column("t", PersonalAccessToken, name)  # noqa: E731
    secret = lambda name: column("s", RotatedSecret, name)  # noqa: E731
    candidates = ", ".join(["%s"] * count)
    if by == "digest":
        where = (
            f"{token('id')} = COALESCE((SELECT c.{q('id')} FROM {table(PersonalAccessToken)} c"  # noqa: S608
            f" WHERE c.{q('digest')} IN ({candidates}) LIMIT 1),"
            f" (SELECT p.{q('token_id')} FROM {table(RotatedSecret)} p"
            f" WHERE p.{q('digest')} IN ({candidates}) LIMIT 1))"
        )
        rotated = f"{secret('token')} = {token('id')} AND {secret('digest')} IN ({candidates})"
    else:
        where, rotated = f"{token('id')} = %s", "1 = 0"
    # Only identifiers from the models go into the text; values are parameters.
    return (
        f"SELECT {', '.join(selected)} FROM {table(PersonalAccessToken)} t"  # noqa: S608
        f" INNER JOIN {table(User)} o ON {column('o', User, 'id')} = {token('owner')}"
        f" INNER JOIN {table(Tenant)} n ON {column('n', Tenant, 'id')} = {token('tenant')}"
        f" LEFT JOIN {table(Application)} a ON {column('a', Application, 'id')} = {token('application')}"
        f" LEFT JOIN {table(RotatedSecret)} s ON {rotated}"
        f" LEFT JOIN {table(TenantApplication)} ta ON {column('ta', TenantApplication, 'tenant')} = {token('tenant')}"
        f" AND {column('ta', TenantApplication, 'application')} = {token('application')}"
        f" AND {column('ta', TenantApplication, 'allows_pats')}"
        f" LEFT JOIN {q(link._meta.db_table)} l ON l.{q(roles.m2m_column_name())} = {token('id')}"
        f" LEFT JOIN {table(Role)} r ON {column('r', Role, 'id')} = l.{q(roles.m2m_reverse_name())}"
        f" LEFT JOIN {table(RoleGrant)} g ON {column('g', RoleGrant, 'role')} = {column('r', Role, 'id')}"
        f" AND {column('g', RoleGrant, 'user')} = {token('owner')}"
        f" WHERE {where}"
    )


# Per database connection: the columns that need converting, as a queryset
# converts them, split into the instances' columns (read from the first row
# only) and the role's (read from every row).
_converters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_INSTANCE_FIELDS = [(model, model._meta.concrete_fields) for model, _ in _INSTANCES]
_ROLE_OFFSET = sum(len(fields) for _, fields in _INSTANCE_FIELDS)


def _column_converters(connection) -> tuple[list, list]:
    if connection not in _converters:
        fields = [field for _, fields in _INSTANCE_FIELDS for field in fields]
        fields += [Role._meta.get_field(name) for name in _ROLE_FIELDS]
        converting = []
        for index, field in enumerate(fields):
            column = field.get_col("t")
            steps = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            if steps:
                converting.append((index, column, steps))
        _converters[connection] = (
            [step for step in converting if step[0] < _ROLE_OFFSET],
            [step for step in converting if step[0] >= _ROLE_OFFSET],
        )
    return _converters[connection]


def load_token_for_authentication(
    digests: list[str] | None = None, *, token_id: int | None = None
) -> tuple[PersonalAccessToken | None, TokenFacts | None]:
    """Load a token by one of its candidate digests (or its id) with all its
    facts in one round trip; an unknown token costs the same statement."""
    token, facts, _ = _load(digests, token_id)
    return token, facts


def load_secret_for_authentication(
    digests: list[str],
) -> tuple[PersonalAccessToken | None, TokenFacts | None, RotatedSecret | None]:
    """As ``load_token_for_authentication`` by digest, and the ``RotatedSecret``
    when the digests are of a secret the token had before a rotation."""
    return _load(digests, None)


def _load(digests: list[str] | None, token_id: int | None):
    connection = connections[DEFAULT_DB_ALIAS]
    if token_id is None:
        sql, params = lookup_sql(connection.vendor, "digest", len(digests)), digests * 3
    else:
        sql, params = lookup_sql(connection.vendor, "id"), [token_id]
    with _cursor(connection) as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows:
        return None, None, None
    instance_columns, role_columns = _column_converters(connection)
    first = _converted(rows[0], instance_columns, connection)
    instances, offset = [], 0
    for model, fields in _INSTANCE_FIELDS:
        values = first[offset : offset + len(fields)]
        names = [field.attname for field in fields]
        instances.append(None if values[0] is None else model.from_db(connection.alias, names, values))
        offset += len(fields)
    token, owner, tenant, application, rotated = instances
    token.owner, token.tenant, token.application = owner, tenant, application
    roles = [
        _role_facts(_converted(row, role_columns, connection)[_ROLE_OFFSET:])
        for row in rows
        if row[0] == first[0] and row[_ROLE_OFFSET] is not None  # one token, even if two digests matched
    ]
    return token, facts_build(token, owner, application_allows_pats=bool(first[-1]), roles=roles), rotated


def _cursor(connection):
    """On PostgreSQL, a cursor that binds on the server, so psycopg prepares the
    statement once per connection (``prepare_threshold`` in the settings) and
    PostgreSQL plans it once; wrapped as Django wraps its own."""
    if connection.vendor != "postgresql" or connection.settings_dict["OPTIONS"].get("prepare_threshold") is None:
        return connection.cursor()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        cursor = psycopg.Cursor(connection.connection)
    return _LoggedAsWritten(cursor, connection) if connection.queries_logged else connection.make_cursor(cursor)


class _LoggedAsWritten(CursorDebugWrapper):
    """Django's query log, with the statement as written and its parameters
    beside it: a prepared execution leaves no composed text to log."""

    def execute(self, sql, params=None):
        with self.debug_sql(sql, params):
            return super(CursorDebugWrapper, self).execute(sql, params)


def _converted(row, converting, connection) -> list:
    values = list(row)
    for index, expression, steps in converting:
        for step in steps:
            values[index] = step(values[index], expression, connection)
    return values


def _role_facts(values) -> RoleFacts:
    role_id, code, name, application_id, pat_eligible, permissions, held = values[:7]
    return RoleFacts(
        id=role_id,
        code=code,
        name=name,
        application_id=application_id,
        pat_eligible=bool(pat_eligible),
        held_by_owner=bool(held),
        permissions=tuple(permissions or ()),
    )
