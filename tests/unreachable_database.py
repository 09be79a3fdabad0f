"""Make the database really unreachable for a while, without mocks: point the
default connection at a file that cannot be opened (SQLite) or a port nothing
listens on (PostgreSQL), and drop the open connection so the next query must
connect again. Use in ``transactional_db`` tests only: closing a connection
inside the test's own transaction would end that transaction."""

from django.db import connection

_saved: dict | None = None


def cut_database() -> None:
    global _saved
    if _saved is None:
        _saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent-directory/unreachable.sqlite3"
    else:
        connection.settings_dict.update(HOST="127.0.0.1", PORT="1")  # privileged port: nothing listens


def restore_database() -> None:
    global _saved
    if _saved is None:
        return
    connection.close()
    connection.settings_dict.update(_saved)
    _saved = None
