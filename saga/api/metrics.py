"""Prometheus metrics, fed by the coordinator's change listener: counts, gauges, durations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from saga.coordinator import SagaChange
from saga.coordinator.dispatch import ServiceLoad
from saga.engine.payloads import (
    CompensationStarted,
    OperatorAction,
    SagaCompensated,
    SagaCompleted,
    SagaStarted,
    SagaStuck,
    StepFailed,
    StepRejected,
    StepSent,
    StepSucceeded,
    payload_of,
)
from saga.events import EventType, Health, SagaStatus
from saga.log.base import SagaRecord
from saga.log.ownership import Ownership
from saga.version import __version__

log = logging.getLogger(__name__)

CENSUS_TIMEOUT_S = 1.0
"""How long a scrape waits for the log to count the live coordinators."""

_DURATIONS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)
_FINAL = {
    EventType.SAGA_COMPLETED: "completed",
    EventType.SAGA_COMPENSATED: "compensated",
}


class _InFlight(Collector):
    """saga_in_flight{saga, health}: unfinished sagas by saga name and (effective) health,
    computed when scraped; every health of every name seen is there, 0 included."""

    def __init__(
        self,
        tracked: dict[str, tuple[str, Health, int]],
        names: set[str],
        stalled: Callable[[], int | None],
    ) -> None:
        self._tracked = tracked
        self._names = names
        self._stalled = stalled

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stalled_before = self._stalled()
        counts = {(name, health): 0 for name in self._names for health in Health}
        for name, health, updated_ms in self._tracked.values():
            if health is not Health.STUCK and stalled_before is not None:
                health = Health.STUCK if updated_ms < stalled_before else health
            counts[name, health] = counts.get((name, health), 0) + 1
        family = GaugeMetricFamily(
            "saga_in_flight", "Unfinished sagas by saga name and health.", labels=["saga", "health"]
        )
        for (name, health), count in sorted(counts.items()):
            family.add_metric([name, health.value], count)
        yield family


class _ServiceFlow(Collector):
    """saga_service_queue_depth, saga_service_in_flight, saga_service_limit{service}: the
    coordinator's flow control per participant service, read when scraped."""

    def __init__(self, service_load: Callable[[], list[ServiceLoad]]) -> None:
        self._service_load = service_load

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queued = GaugeMetricFamily(
            "saga_service_queue_depth",
            "Commands waiting in the coordinator for an in-flight slot, per service.",
            labels=["service"],
        )
        in_flight = GaugeMetricFamily(
            "saga_service_in_flight",
            "Commands sent and not answered (nor timed out) yet, per service.",
            labels=["service"],
        )
        limit = GaugeMetricFamily(
            "saga_service_limit",
            "The current in-flight limit per service (absent when unbounded).",
            labels=["service"],
        )
        for load in self._service_load():
            queued.add_metric([load.service], load.queued)
            in_flight.add_metric([load.service], load.in_flight)
            if load.limit is not None:
                limit.add_metric([load.service], load.limit)
        yield queued
        yield in_flight
        yield limit


@dataclass(frozen=True, kw_only=True)
class OwnershipCounts:
    """This coordinator's share of the sagas and its ownership counters, read at scrape."""

    owned: int
    """Unfinished sagas it owns now."""
    fenced_writes: int
    """Its writes refused because another coordinator had taken the saga over."""
    claimed: int
    """Sagas it claimed (taken over, handed back by another, or taken for an operator)."""
    released: int
    """Sagas it handed back for balance."""
    leases_lost: int
    """Times it found its lease expired (and let every saga go)."""


class _Ownership(Collector):
    """saga_owned_sagas, saga_fenced_writes_total, saga_claimed_sagas_total,
    saga_released_sagas_total, saga_leases_lost_total: this coordinator's counters, read when
    scraped; saga_coordinators_live: the log's census, counted by the scrape itself."""

    def __init__(self, counts: Callable[[], OwnershipCounts], live: Callable[[], int | None]):
        self._counts = counts
        self._live = live

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        counts = self._counts()
        yield GaugeMetricFamily(
            "saga_owned_sagas", "Unfinished sagas this coordinator owns.", value=counts.owned
        )
        yield CounterMetricFamily(
            "saga_fenced_writes",
            "Writes refused because another coordinator had taken the saga over.",
            value=counts.fenced_writes,
        )
        yield CounterMetricFamily(
            "saga_claimed_sagas",
            "Sagas this coordinator claimed: taken over from a dead coordinator, handed back"
            " by another, or taken for an operator's action.",
            value=counts.claimed,
        )
        yield CounterMetricFamily(
            "saga_released_sagas",
            "Sagas this coordinator handed back for balance.",
            value=counts.released,
        )
        yield CounterMetricFamily(
            "saga_leases_lost",
            "Times this coordinator found its lease expired and let every saga go.",
            value=counts.leases_lost,
        )
        live = self._live()
        if live is not None:  # absent when the log did not answer this scrape
            yield GaugeMetricFamily(
                "saga_coordinators_live", "Coordinators whose lease lasts.", value=live
            )


class SagaMetrics:
    """One registry per app (so several apps in one process never clash)."""

    def __init__(
        self,
        stalled_before_ms: Callable[[], int | None],
        service_load: Callable[[], list[ServiceLoad]] | None = None,
        ownership: Callable[[], OwnershipCounts] | None = None,
    ) -> None:
        # No saga_*_created series: they double the series count and nobody graphs them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        self.build_info = Gauge(
            "saga_build_info", "The running saga-coordinator version.", ["version"], registry=r
        )
        self.build_info.labels(__version__).set(1)
        self.started = Counter("saga_started", "Sagas started.", ["saga"], registry=r)
        self.ended = Counter(
            "saga_finished", "Sagas that ended, by outcome.", ["saga", "status"], registry=r
        )
        self.stuck = Counter("saga_stuck", "Times a saga got stuck.", ["saga"], registry=r)
        self.compensations = Counter(
            "saga_compensations", "Sagas that began compensating.", ["saga"], registry=r
        )
        self.steps = Counter(
            "saga_step_outcomes",
            "Step and compensation attempts, by outcome.",
            ["saga", "step", "direction", "outcome"],
            registry=r,
        )
        self.actions = Counter(
            "saga_operator_actions", "Operator actions taken.", ["saga", "action"], registry=r
        )
        self.step_seconds = Histogram(
            "saga_step_duration_seconds",
            "From sending a step or compensation to its reply.",
            ["saga", "step", "direction"],
            buckets=_DURATIONS,
            registry=r,
        )
        self.saga_seconds = Histogram(
            "saga_duration_seconds",
            "From start to completed or compensated.",
            ["saga", "status"],
            buckets=_DURATIONS,
            registry=r,
        )
        self._tracked: dict[str, tuple[str, Health, int]] = {}
        self._names: set[str] = set()
        self._sent: dict[str, dict[tuple[str, str], int]] = {}
        r.register(_InFlight(self._tracked, self._names, stalled_before_ms))
        if service_load is not None:
            r.register(_ServiceFlow(service_load))
        self.coordinators_live: int | None = None
        """Live coordinators as the log counted them at the last scrape (None: unknown)."""
        if ownership is not None:
            r.register(_Ownership(ownership, lambda: self.coordinators_live))

    def seed(self, unfinished: list[SagaRecord]) -> None:
        """Count sagas that were unfinished before this process started."""
        for record in unfinished:
            if record.health is not None and record.saga_id not in self._tracked:
                self._tracked[record.saga_id] = (record.name, record.health, record.updated_ms)
                self._names.add(record.name)

    def observe(self, change: SagaChange) -> None:
        """A coordinator listener: update every metric from one recorded change."""
        name = change.name
        self._names.add(name)
        for event in change.events:
            match payload_of(event):
                case SagaStarted():
                    self.started.labels(name).inc()
                case StepSent(step=step, direction=direction):
                    key = (step, direction.value)
                    self._sent.setdefault(change.saga_id, {})[key] = event.at_ms
                case (
                    StepSucceeded(step=step, direction=direction)
                    | StepRejected(step=step, direction=direction)
                    | StepFailed(step=step, direction=direction)
                ):
                    outcome = event.type.value.removeprefix("step_")
                    self.steps.labels(name, step, direction.value, outcome).inc()
                    sent = self._sent.get(change.saga_id, {}).pop((step, direction.value), None)
                    if sent is not None:
                        seconds = max(event.at_ms - sent, 0) / 1000
                        self.step_seconds.labels(name, step, direction.value).observe(seconds)
                case CompensationStarted():
                    self.compensations.labels(name).inc()
                case SagaStuck():
                    self.stuck.labels(name).inc()
                case OperatorAction(action=action):
                    self.actions.labels(name, action.value).inc()
                case SagaCompleted() | SagaCompensated():
                    end = _FINAL[event.type]
                    self.ended.labels(name, end).inc()
                    seconds = max(event.at_ms - change.started_ms, 0) / 1000
                    self.saga_seconds.labels(name, end).observe(seconds)
        if change.status.is_final or change.health is None:
            self._tracked.pop(change.saga_id, None)
        else:
            at_ms = change.events[-1].at_ms if change.events else 0
            self._tracked[change.saga_id] = (name, change.health, at_ms)
        if change.status.is_final or change.status is SagaStatus.STUCK:
            # Settled: nothing it sent is waited for any more.
            self._sent.pop(change.saga_id, None)

    async def count_coordinators(self, ownership: Ownership) -> None:
        """Count the live coordinators for this scrape; a log that does not answer in time
        leaves the gauge out rather than show a stale figure."""
        try:
            census = await asyncio.wait_for(ownership.census(), CENSUS_TIMEOUT_S)
        except Exception as exc:  # the scrape must answer even when the log does not
            log.debug("could not count the live coordinators: %s", exc)
            self.coordinators_live = None
        else:
            self.coordinators_live = census.live

    def render(self) -> bytes:
        return generate_latest(self.registry)
