"""Plain ASGI middleware (cheaper per request than Starlette's BaseHTTPMiddleware): the body size limit
and the security headers every answer carries."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No inline script or style anywhere: a stored `<script>` that escaping missed still could not run.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# FastAPI's /docs page loads Swagger UI from a CDN with an inline bootstrap script.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")


class BodyLimit:
    """413 for a body over `max_bytes`: at once from Content-Length, or as soon as a streamed body
    passes the limit (before the route has stored anything, since routes read the whole body first)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    from memoryos_workers.apps.http.errors import TooLarge

                    raise TooLarge(self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return (f"the request body is over {self.max_bytes} bytes (MEMORYOS_API_MAX_BODY_BYTES); "
                "send fewer turns per request")

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": self._message() + "; nothing was stored", "detail": []}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = (DOCS_CSP if scope["path"] in DOCS_PATHS else CSP).encode()

        async def with_headers(message: Message) -> Any:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers, (b"content-security-policy", csp)]
            await send(message)

        await self.app(scope, receive, with_headers)
