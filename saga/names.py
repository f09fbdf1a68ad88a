"""The grammars of names and saga ids, defined once and checked wherever one enters.

A *name* (saga, step, service, command, participant instance) is 1 to 200 ASCII letters,
digits, ``_`` or ``-``. A *saga id* is 1 to 200 ASCII letters, digits, ``_``, ``-``, ``.``,
``:`` or ``@``, starting with a letter or digit. Neither admits whitespace, control characters,
``/``, ``%``, ``?`` or ``#``: an id crosses NATS headers (which trim whitespace), URLs and
idempotency keys (``<saga id>/<step>/<direction>``) byte for byte, and two different ids never
share a key. Every check is a full match: ``"payments\\n"`` is not a name.
"""

from __future__ import annotations

import re

from saga.errors import ProtocolError

NAME_MAX = 200
SAGA_ID_MAX = 200
NAME_RULE = f"1 to {NAME_MAX} letters, digits, '_' or '-'"
SAGA_ID_RULE = (
    f"1 to {SAGA_ID_MAX} ASCII letters, digits, '_', '-', '.', ':' or '@',"
    " starting with a letter or digit"
)
_NAME = re.compile(rf"[A-Za-z0-9_-]{{1,{NAME_MAX}}}")
_SAGA_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.:@-]{{0,{SAGA_ID_MAX - 1}}}")


def is_name(value: object) -> bool:
    """True for a valid saga, step, service, command or instance name."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def is_saga_id(value: object) -> bool:
    """True for a saga id the grammar accepts."""
    return isinstance(value, str) and _SAGA_ID.fullmatch(value) is not None


def check_saga_id(value: object) -> str:
    """``value`` if it is a valid saga id; ProtocolError naming the rule otherwise."""
    return _check_id(value, "saga id", SAGA_ID_RULE)


def _check_id(value: object, what: str, rule: str) -> str:
    if is_saga_id(value):
        assert isinstance(value, str)
        return value
    shown = repr(value) if not isinstance(value, str) or len(value) <= 60 else repr(value[:60])
    raise ProtocolError(f"{what} {shown} is invalid: it must be {rule}")


EVENT_ID_RULE = SAGA_ID_RULE
"""An outside event's id (given by its sender) follows the saga id grammar."""


def check_event_id(value: object) -> str:
    """``value`` if it is a valid event id; ProtocolError naming the rule otherwise."""
    return _check_id(value, "event id", EVENT_ID_RULE)
