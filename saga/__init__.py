"""saga-coordinator: declare sagas in Python, run them over NATS with a SQL log.

The public API. Adapters (``SqlSagaLog``, ``NatsTransport``) and the test kit
(``saga.testing``) are imported from here or from their modules.
"""

from saga.client import send_event, start_saga
from saga.coordinator import Coordinator, SagaHandle, SagaResult, SignalResult
from saga.definition import FOREVER, RetryPolicy, Saga, Step, StepKind, Wait
from saga.errors import (
    CompletionRefused,
    ConcurrencyError,
    ConfigError,
    DefinitionError,
    FencedError,
    IdempotencyStoreError,
    LogError,
    ProtocolError,
    QueryError,
    Rejected,
    SagaConflictError,
    SagaError,
    SagaNotFoundError,
    StateError,
    StepError,
    TransportError,
    UnknownSagaError,
)
from saga.events import SagaStatus
from saga.log.base import SagaLog, SagaQuery
from saga.log.sql import SqlSagaLog
from saga.participant import CommandContext, Participant, SqlIdempotencyStore
from saga.protocol import Direction, Outcome
from saga.redact import redact_url
from saga.sqlpool import PoolOptions
from saga.transport.base import Transport
from saga.transport.nats import NatsTransport
from saga.transport.security import NatsSecurity
from saga.transport.signals import SignalReply
from saga.transport.starts import StartReply
from saga.version import __version__

__all__ = [
    "FOREVER",
    "CommandContext",
    "CompletionRefused",
    "ConcurrencyError",
    "ConfigError",
    "Coordinator",
    "DefinitionError",
    "Direction",
    "FencedError",
    "IdempotencyStoreError",
    "LogError",
    "NatsSecurity",
    "NatsTransport",
    "Outcome",
    "Participant",
    "PoolOptions",
    "ProtocolError",
    "QueryError",
    "Rejected",
    "RetryPolicy",
    "Saga",
    "SagaConflictError",
    "SagaError",
    "SagaHandle",
    "SagaLog",
    "SagaNotFoundError",
    "SagaQuery",
    "SagaResult",
    "SagaStatus",
    "SignalReply",
    "SignalResult",
    "SqlIdempotencyStore",
    "SqlSagaLog",
    "StartReply",
    "StateError",
    "Step",
    "StepError",
    "StepKind",
    "Transport",
    "TransportError",
    "UnknownSagaError",
    "Wait",
    "__version__",
    "redact_url",
    "send_event",
    "start_saga",
]
