"""Strict query filters for the API: a value the database cannot compare
(a date that overflows in UTC, an id past its integers) is a 400, not a 500,
and a filter given without a value is refused rather than ignored."""

from datetime import UTC

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField
from drf_spectacular.utils import extend_schema_field

# The largest integer the database holds (a signed 64-bit one).
MAX_DATABASE_INTEGER = 2**63 - 1


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_DATABASE_INTEGER})
class IdFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        super().__init__(*args, min_value=1, max_value=MAX_DATABASE_INTEGER, **kwargs)


class UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 date and time that exists in UTC, where the database
    compares them: 0001-01-01T00:00+01:00 does not."""

    def to_python(self, value):
        value = super().to_python(value)
        try:
            return value and value.astimezone(UTC)
        except OverflowError:
            raise ValidationError("Enter a date and time between years 1 and 9999 in UTC.", code="invalid") from None


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


@extend_schema_field({"type": "string", "minLength": 1})
class TextFilter(django_filters.CharFilter):
    pass


class StrictFilterSet(django_filters.FilterSet):
    """Refuses a filter given without a value (``?since=``), which django-filter
    would silently ignore: the client asked for something, just not that."""

    def is_valid(self) -> bool:
        valid = super().is_valid()
        for name in self.filters:
            if self.data.get(name) == "":
                self.form.add_error(name, "Give a value or leave the parameter out.")
                valid = False
        return valid
