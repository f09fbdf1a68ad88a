"""The HTTP API: monitor and operate sagas and compensations; metrics, dashboard, OpenAPI.

app = create_app(coordinator, ApiConfig(tokens=(...)))       # an aiohttp Application
server = await start_http(coordinator, host="127.0.0.1", port=8080)
print(server.url); ...; await server.close()
"""

from saga.api.app import ROUTES, create_app
from saga.api.config import ApiConfig, AuthLimit, Role, Token, tokens_from_file, tokens_from_specs
from saga.api.openapi import document
from saga.api.server import HttpServer, check_exposure, is_loopback, start_http

__all__ = [
    "ROUTES",
    "ApiConfig",
    "AuthLimit",
    "HttpServer",
    "Role",
    "Token",
    "check_exposure",
    "create_app",
    "document",
    "is_loopback",
    "start_http",
    "tokens_from_file",
    "tokens_from_specs",
]
