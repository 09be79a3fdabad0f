"""The API's pagination."""

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination

from core.api.filters import MAX_DATABASE_INTEGER


class StrictLimitOffsetPagination(LimitOffsetPagination):
    """``limit`` from 1 to ``max_limit`` and ``offset`` from 0. A value that is
    not a whole number in range is refused with 400, not silently replaced by
    the default, and no client can ask for the whole table in one page."""

    max_limit = 500

    def get_limit(self, request) -> int:
        return self._whole_number(request, self.limit_query_param, 1, self.max_limit, default=self.default_limit)

    def get_offset(self, request) -> int:
        return self._whole_number(request, self.offset_query_param, 0, MAX_DATABASE_INTEGER, default=0)

    @staticmethod
    def _whole_number(request, name: str, minimum: int, maximum: int, *, default: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        if not (raw.isascii() and raw.isdigit() and minimum <= int(raw) <= maximum):
            raise ValidationError({name: [f"Give a whole number from {minimum} to {maximum}."]})
        return int(raw)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        bounds = {self.limit_query_param: (1, self.max_limit), self.offset_query_param: (0, MAX_DATABASE_INTEGER)}
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            minimum, maximum = bounds[parameter["name"]]
            parameter["schema"].update(minimum=minimum, maximum=maximum)
        return parameters
