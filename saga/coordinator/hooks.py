"""CoordinatorHooks: seams where a test can step in on the coordinator's hot path.

Production passes none (``Coordinator(..., hooks=None)``, the default), and the coordinator
then makes no call at all. Crash tests give one that SIGKILLs the process at a named point
(``tests/integration/crash_sagas.py``); other tests record what happened when.
"""

from __future__ import annotations

from collections.abc import Sequence

from saga.events import NewEvent
from saga.protocol import Command


class CoordinatorHooks:
    """Called by a coordinator at the moments where a crash is most telling.

    Every method is a no-op here: subclass and override the ones you need. They run inline
    on the coordinator's event loop, so keep them fast and do not raise.
    """

    def on_reply(self, command: Command) -> None:
        """A reply to ``command`` arrived; nothing about it is recorded yet."""

    def after_record(self, events: Sequence[NewEvent]) -> None:
        """``events`` (one saga's) are in the log; no command that follows them is sent yet."""

    def after_send(self, command: Command) -> None:
        """``command`` was recorded and handed to the transport."""
