"""The saga DSL: declare sagas as named, versioned lists of typed steps. No I/O."""

from saga.definition.retry import FOREVER, RetryPolicy
from saga.definition.saga import JsonObject, RequestBuilder, Results, Saga, Step, StepKind

__all__ = [
    "FOREVER",
    "JsonObject",
    "RequestBuilder",
    "Results",
    "RetryPolicy",
    "Saga",
    "Step",
    "StepKind",
]
