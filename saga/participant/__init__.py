"""The participant SDK: expose a service's saga commands, idempotently, over NATS micro."""

from saga.participant.context import CommandContext, Handler
from saga.participant.memory import InMemoryIdempotencyStore
from saga.participant.service import Participant
from saga.participant.sql import SqlIdempotencyStore
from saga.participant.store import Claim, IdempotencyRecord, IdempotencyStore, RecordState

__all__ = [
    "Claim",
    "CommandContext",
    "Handler",
    "IdempotencyRecord",
    "IdempotencyStore",
    "InMemoryIdempotencyStore",
    "Participant",
    "RecordState",
    "SqlIdempotencyStore",
]
