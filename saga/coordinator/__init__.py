"""The coordinator: runs the engine with a log, a transport, timers and recovery."""

from saga.coordinator.coordinator import Coordinator, SagaHandle, new_saga
from saga.coordinator.registry import Registry
from saga.coordinator.result import SagaResult

__all__ = ["Coordinator", "Registry", "SagaHandle", "SagaResult", "new_saga"]
