"""Network allowlists: lists of CIDR ranges (IPv4 and IPv6) an address must be within.

Kept as normalised strings (``10.0.0.0/8``, ``2001:db8::/32``); parsed once per
distinct list (``_parsed``), so checking an address costs microseconds.
"""

import ipaddress
from functools import lru_cache

from django import forms

MAX_NETWORKS = 50

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks_normalized(values: object) -> tuple[list[str], list[str]]:
    """``values`` (a list of strings, or text with one range per line or comma)
    as normalised CIDR strings, and the errors found (empty when valid). A bare
    address is a /32 (or /128); host bits must be zero (``10.0.0.1/8`` is refused)."""
    if isinstance(values, str):
        values = [part for line in values.splitlines() for part in line.split(",")]
    if not isinstance(values, list | tuple) or not all(isinstance(value, str) for value in values):
        return [], ["Give a list of CIDR ranges, such as 10.0.0.0/8 or 2001:db8::/32."]
    normalized, errors = [], []
    for value in (value.strip() for value in values):
        if not value:
            continue
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError:
            errors.append(f"“{value[:60]}” is not a CIDR range (such as 10.0.0.0/8 or 2001:db8::/32, host bits zero).")
            continue
        if str(network) not in normalized:
            normalized.append(str(network))
    if len(normalized) > MAX_NETWORKS:
        errors.append(f"At most {MAX_NETWORKS} ranges.")
    return normalized, errors


@lru_cache(maxsize=4096)
def _parsed(networks: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(network) for network in networks)


def address_within(ip: str | None, networks: list[str] | tuple[str, ...]) -> bool:
    """Whether ``ip`` is in one of ``networks`` (an empty list allows every address, an unknown one none)."""
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    return any(address in network for network in _parsed(tuple(networks)) if network.version == address.version)


def networks_within(inner: list[str], outer: list[str]) -> list[str]:
    """The ranges of ``inner`` not inside any range of ``outer`` (none when ``outer`` is empty)."""
    if not outer:
        return []
    bounds = _parsed(tuple(outer))
    return [
        network
        for network, parsed in zip(inner, _parsed(tuple(inner)), strict=True)
        if not any(parsed.version == bound.version and parsed.subnet_of(bound) for bound in bounds)
    ]


class NetworksField(forms.CharField):
    """A form field for an allowlist: one range per line (or separated by commas)."""

    widget = forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "autocapitalize": "off"})

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", 4000)
        super().__init__(**kwargs)

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list | tuple) else value

    def has_changed(self, initial, data) -> bool:
        return networks_normalized(initial or [])[0] != networks_normalized(data or "")[0]

    def clean(self, value) -> list[str]:
        text = super().clean(value)
        normalized, errors = networks_normalized(text or "")
        if errors:
            raise forms.ValidationError(errors)
        return normalized
