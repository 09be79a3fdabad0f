"""Request parsers that turn what Python's parsers raise on hostile input into
a 400 (DRF lets these through as a 500): JSON nested deeper than the parser
goes, and a form with more than DATA_UPLOAD_MAX_NUMBER_FIELDS parameters."""

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None


class FormParser(parsers.FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except TooManyFieldsSent:
            raise ParseError(f"More than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} parameters.") from None
