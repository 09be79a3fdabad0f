"""How names and reasons typed by people are stored."""


def whitespace_collapsed(value: object) -> str:
    """Return ``value`` as text with each run of whitespace made one space and
    the ends trimmed, so two names that look alike are equal."""
    return " ".join(str(value or "").split())
