"""The saga DSL: declare sagas as named, versioned graphs of typed steps. No I/O."""

from saga.definition.retry import FOREVER, RetryPolicy
from saga.definition.saga import (
    AnyStep,
    JsonObject,
    RequestBuilder,
    Results,
    Saga,
    Step,
    StepKind,
    Wait,
)

__all__ = [
    "FOREVER",
    "AnyStep",
    "JsonObject",
    "RequestBuilder",
    "Results",
    "RetryPolicy",
    "Saga",
    "Step",
    "StepKind",
    "Wait",
]
