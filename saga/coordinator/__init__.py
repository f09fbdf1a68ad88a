"""The coordinator: runs the engine with a log, a transport, timers and recovery."""

from saga.coordinator.coordinator import Coordinator, SagaHandle, new_saga
from saga.coordinator.registry import Registry
from saga.coordinator.result import SagaChange, SagaResult

__all__ = ["Coordinator", "Registry", "SagaChange", "SagaHandle", "SagaResult", "new_saga"]
