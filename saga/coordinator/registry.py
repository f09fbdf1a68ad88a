"""The registry of saga definitions a coordinator runs: by name, by (name, version)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from saga.definition import Saga
from saga.errors import DefinitionError, UnknownSagaError


class Registry:
    """Saga definitions by name and version; several versions of one name may coexist."""

    def __init__(self, sagas: Iterable[Saga]) -> None:
        self._by_key: dict[tuple[str, int], Saga] = {}
        for saga in sagas:
            if not isinstance(saga, Saga):
                raise DefinitionError(f"{saga!r} is not a Saga")
            if saga.key in self._by_key and self._by_key[saga.key] is not saga:
                raise DefinitionError(f"saga {saga.name!r} version {saga.version} registered twice")
            self._by_key[saga.key] = saga

    def __iter__(self) -> Iterator[Saga]:
        return iter(self._by_key.values())

    def names(self) -> list[str]:
        return sorted({name for name, _ in self._by_key})

    def get(self, name: str, version: int) -> Saga | None:
        return self._by_key.get((name, version))

    def latest(self, name: str) -> Saga:
        versions = [saga for (n, _), saga in self._by_key.items() if n == name]
        if not versions:
            raise UnknownSagaError(f"no saga named {name!r} is registered")
        return max(versions, key=lambda saga: saga.version)

    def resolve(self, saga: Saga | str, version: int | None = None) -> Saga:
        """The registered definition for a Saga object or a name (latest version by default)."""
        if isinstance(saga, Saga):
            if self._by_key.get(saga.key) is not saga:
                raise UnknownSagaError(f"saga {saga.name!r} v{saga.version} is not registered")
            return saga
        if version is None:
            return self.latest(saga)
        found = self.get(saga, version)
        if found is None:
            raise UnknownSagaError(f"saga {saga!r} version {version} is not registered")
        return found
