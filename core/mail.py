"""The demo's e-mail backend: Django's console backend, on stderr.

Commands print secrets on stdout for scripts to capture
(``TOKEN=$(manage.py issue_pat …)``); the notice a new token sends must not
end up in the captured value.
"""

import sys

from django.core.mail.backends import console


class ConsoleEmailBackend(console.EmailBackend):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("stream", sys.stderr)
        super().__init__(*args, **kwargs)
