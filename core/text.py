"""How names, codes and reasons typed by people are stored and checked."""

import re

# A permission code, as roles carry it and route rules require it: crm.orders.read.
PERMISSION_CODE = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)+", re.ASCII)


def whitespace_collapsed(value: object) -> str:
    """Return ``value`` as text with each run of whitespace made one space and
    the ends trimmed, so two names that look alike are equal."""
    return " ".join(str(value or "").split())


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``3 tokens``, ``1 token``: a count with its noun, for messages people read."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"
