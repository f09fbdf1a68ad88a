"""The coordinator: runs the engine with a log, a transport, timers and recovery."""

from saga.coordinator.coordinator import Coordinator, SagaHandle, saga_start
from saga.coordinator.hooks import CoordinatorHooks
from saga.coordinator.registry import Registry
from saga.coordinator.result import SagaChange, SagaResult, SignalResult

__all__ = [
    "Coordinator",
    "CoordinatorHooks",
    "Registry",
    "SagaChange",
    "SagaHandle",
    "SagaResult",
    "SignalResult",
    "saga_start",
]
