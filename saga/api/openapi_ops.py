"""The contract of the operator overview routes (stats, inbox, bulk actions): one
``Operation`` each, spliced into ``saga.api.openapi.OPERATIONS``."""

from __future__ import annotations

from saga.api.models import Operation, Reply
from saga.api.ops_models import (
    MAX_BULK,
    BulkPath,
    BulkReply,
    BulkRequest,
    InboxQuery,
    InboxReply,
    StatsQuery,
    StatsReply,
)

OPERATIONS: list[Operation] = [
    Operation(
        method="GET",
        path="/api/stats",
        summary="Counts by status and health, and per-minute figures over a window.",
        tag="operations",
        replies={200: Reply(description="The figures.", model=StatsReply)},
        errors={400: "A bad query parameter (the message names it)."},
        query=StatsQuery,
    ),
    Operation(
        method="GET",
        path="/api/inbox",
        summary="What needs a person: stuck, needs-attention, failing compensations.",
        tag="operations",
        replies={200: Reply(description="The items, oldest trouble first.", model=InboxReply)},
        errors={400: "A bad query parameter (the message names it)."},
        query=InboxQuery,
    ),
    Operation(
        method="POST",
        path="/api/bulk/{action}",
        summary=f"Retry, resolve or cancel up to {MAX_BULK} sagas with one reason; one audit"
        " entry per saga; dry_run previews each.",
        tag="actions",
        replies={200: Reply(description="Each saga's outcome.", model=BulkReply)},
        errors={
            400: "The body is not JSON, or a saga id is invalid.",
            404: "No such bulk action.",
            422: "A bad field, neither or both of saga_ids and filter, or a filter that"
            f" matches more than {MAX_BULK} sagas.",
        },
        path_model=BulkPath,
        body=BulkRequest,
        body_required=True,
        write=True,
    ),
]
"""The routes of ``saga.api.stats``, ``saga.api.inbox`` and ``saga.api.bulk``."""
