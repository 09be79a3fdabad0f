"""Strict input parsing for the API: wrong types are errors, not coercions,
and unknown fields are refused rather than silently ignored."""

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework import serializers


class StrictSerializer(serializers.Serializer):
    """Refuses unknown fields. ``exactly_one_of`` names groups of alternatives
    of which a request gives exactly one (``("email", "userId")``),
    ``at_least_one_of`` fields of which it gives one or more; the OpenAPI
    schema states these rules (``core.api.schema.StrictSerializerScheme``)."""

    exactly_one_of: tuple[tuple[str, ...], ...] = ()
    at_least_one_of: tuple[str, ...] = ()

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        value = super().to_internal_value(data)
        errors = {
            name: [f"Give exactly one of {' and '.join(group)}."]
            for group in self.exactly_one_of
            if sum(name in value for name in group) != 1
            for name in group
        }
        if self.at_least_one_of and not any(name in value for name in self.at_least_one_of):
            errors.update({name: [f"Give {' or '.join(self.at_least_one_of)}."] for name in self.at_least_one_of})
        if errors:
            raise serializers.ValidationError(errors)
        return value


class StrictIntegerField(serializers.IntegerField):
    """An integer given as a JSON number, never a string, float or boolean."""

    def to_internal_value(self, data):
        if type(data) is not int:
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A JSON string, never a number, taken as sent: DRF would strip spaces
    before checking the length, so what the schema refuses could pass."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictSlugField(serializers.SlugField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictEmailField(serializers.EmailField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictUUIDField(serializers.UUIDField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class StrictDateTimeField(serializers.DateTimeField):
    """An ISO 8601 date and time with its offset (``Z`` or ``+01:00``): a time
    without one is refused, not read as UTC, since the client meant some zone."""

    default_error_messages = {
        "naive": "Give the time zone: end the date and time with Z (UTC) or an offset such as +01:00.",
    }

    def to_internal_value(self, value):
        if not isinstance(value, str):
            self.fail("invalid", format="ISO 8601")
        try:
            parsed = parse_datetime(value.strip()) if len(value) < 64 else None
        except ValueError:  # the right shape, an impossible date: DRF says so below
            parsed = None
        if parsed is not None and timezone.is_naive(parsed):
            self.fail("naive")
        return super().to_internal_value(value)


class StrictListField(serializers.ListField):
    def to_internal_value(self, data):
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        return super().to_internal_value(data)
