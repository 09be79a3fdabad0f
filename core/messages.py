"""The message storage (settings.MESSAGE_STORAGE): Django's default, able to
hold back what a view says while the view's outcome is still undecided."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.contrib.messages.storage.fallback import FallbackStorage


class HoldingStorage(FallbackStorage):
    held: list[tuple[int, str, str]] | None = None

    def add(self, level, message, extra_tags="") -> None:
        if self.held is not None:
            self.held.append((level, message, extra_tags))
            return
        super().add(level, message, extra_tags)

    @contextmanager
    def holding(self) -> Iterator[list[tuple[int, str, str]]]:
        """Hold the messages added inside; those still in the yielded list at
        the end are added then (clear it to drop them, e.g. after a rollback)."""
        self.held, held = [], []
        try:
            yield self.held
        finally:
            held, self.held = self.held, None
            for level, message, extra_tags in held:
                self.add(level, message, extra_tags)
