"""JSON error responses, and the middleware that turns every failure into one."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from saga.errors import (
    LogError,
    ProtocolError,
    SagaNotFoundError,
    StateError,
    UnknownSagaError,
)

log = logging.getLogger(__name__)

MEDIA = "application/json"
"""The media type of every problem answer (``{"error": {...}}``; /openapi.json says so)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    421: "misdirected_request",
    422: "invalid",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An HTTP error answered as ``{"error": {"status", "code", "message"}}``."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def response(self) -> web.Response:
        return web.json_response(
            problem(self.status, self.message),
            status=self.status,
            headers=self.headers,
            content_type=MEDIA,
        )


def problem(status: int, message: str) -> dict[str, dict[str, object]]:
    return {"error": {"status": status, "code": _CODES.get(status, "error"), "message": message}}


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def invalid(message: str) -> ApiError:
    return ApiError(422, message)


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes a JSON problem; domain errors map to 404, 409, 413, 422, 503."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return ApiError(exc.status, exc.reason, headers=headers).response()
    except (SagaNotFoundError, UnknownSagaError) as exc:
        return ApiError(404, exc.message).response()
    except StateError as exc:
        return ApiError(409, exc.message).response()
    except ProtocolError as exc:
        return ApiError(413 if "byte limit" in exc.message else 422, exc.message).response()
    except LogError as exc:
        log.warning("saga log unavailable for %s %s: %s", request.method, request.path, exc)
        return ApiError(503, "the saga log is unavailable; try again").response()
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return ApiError(500, "internal error; see the server log").response()
