"""What the API answers when something is wrong, in one shape: `{"error": ..., "detail": [...]}`.

- 422 names each bad field (`body.user_input`, `body[3].timestamp`, `path.user_id`, `query.limit`),
  never echoes the input back (it may be a 32,000-character turn), and nothing was stored;
- 503 with Retry-After while Redis (or, over RPC, a worker) does not answer: retry with the same
  turn_id, duplicates are dropped;
- 413 for a body over the limit; 401 from auth (with WWW-Authenticate); 404 for what is not there; 405
  with the Allow header listing every method of the path; anything unexpected is a 500 that says where
  to look, logged here with its traceback, never bad input's fault.

`ErrorBody` is that shape as a model, and `responses()` declares it in the OpenAPI document for the
statuses a route can answer, so the document describes exactly what is sent (tests/apps/http/
test_openapi_conformance.py runs schemathesis against it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException
from starlette.routing import Match

log = logging.getLogger("memoryos.http")
RETRY_AFTER_S = 5


class Problem(BaseModel):
    field: str = Field(description="Where: body.user_input, body[3].timestamp, path.user_id, query.limit or body.")
    message: str = Field(description="What is wrong with it (the value itself is never echoed in full).")


class ErrorBody(BaseModel):
    """Every error answer of the API, whatever its status."""

    error: str = Field(description="What happened and what to do.")
    detail: list[Problem] = Field(description="The bad fields of a 422; empty for other errors.")


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "required": True,
                                "schema": {"type": "integer"}}}
_WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "Bearer", "required": True, "schema": {"type": "string"}}}
_STATUSES: dict[int, tuple[str, dict[str, Any]]] = {
    401: ("No valid API key: send `Authorization: Bearer KEY` (keys are set in MEMORYOS_API_KEYS).",
          _WWW_AUTHENTICATE),
    404: ("Nothing is stored for this user (it never published, or it was forgotten).", {}),
    413: ("The request body is over MEMORYOS_API_MAX_BODY_BYTES, or holds more turns than MEMORYOS_API_MAX_TURNS; "
          "nothing was stored.", {}),
    422: ("Invalid input, each bad field named in `detail`; nothing was changed.", {}),
    500: ("An unexpected error; the server log has the details.", {}),
    503: ("Redis, the vector store or a worker does not answer; retry after Retry-After seconds (turns with the "
          "same turn_ids: duplicates are dropped).", _RETRY_AFTER),
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of these error statuses, each with the one error body (and its headers)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, headers = _STATUSES[status]
        out[status] = {"model": ErrorBody, "description": description, **({"headers": headers} if headers else {})}
    return out


class InvalidInput(Exception):
    """Bad input found by a route: (field, message) pairs."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = list(problems)

    @classmethod
    def from_value_error(cls, exc: ValueError, where: str, default_field: str) -> InvalidInput:
        """Our ValueErrors start with the field they are about ("top_k: must be ..."); map it to `where`."""
        text = str(exc)
        head, sep, rest = text.partition(": ")
        if sep and head.replace("_", "").isalnum():
            return cls([(f"{where}.{head}", rest)])
        return cls([(f"{where}.{default_field}" if default_field else where, text)])

    @classmethod
    def from_validation(cls, exc: ValidationError, where: str, rename: dict[str, str] | None = None) -> InvalidInput:
        return cls(list(_pydantic_problems(exc.errors(include_input=False), where, rename or {})))


class TooLarge(HTTPException):
    """An HTTPException, so FastAPI's body reading passes it on instead of making it a 400."""

    def __init__(self, message: str) -> None:
        super().__init__(status_code=413, detail=message + "; nothing was stored")


def _pydantic_problems(errors: Iterable[Any], where: str, rename: dict[str, str]) -> Iterable[tuple[str, str]]:
    for err in errors:
        path = where
        loc = err.get("loc", ())
        for part in loc:
            path += f"[{part}]" if isinstance(part, int) else f".{rename.get(str(part), part)}"
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if loc:  # our checks name their field first ("top_k: must be ..."): the path says it already
            message = message.removeprefix(f"{loc[-1]}: ")
        yield path, message


def _body(error: str, problems: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    return {"error": error, "detail": [{"field": f, "message": m} for f, m in problems]}


def _request_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        where = str(loc.pop(0)) if loc else "body"
        problems.extend(_pydantic_problems([{**err, "loc": loc}], where, {}))
    return JSONResponse(_body("invalid input; nothing was changed", problems), status_code=422)


def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidInput)
    return JSONResponse(_body("invalid input; nothing was changed", exc.problems), status_code=422)


def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = exc.headers
    if exc.status_code == 405:  # Starlette names the methods of one route only: GET, not also DELETE
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    return JSONResponse(_body(str(exc.detail)), status_code=exc.status_code, headers=headers)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route of this path answers fully (asked per method: included routers nest
    their routes, and only `matches` sees through them)."""
    routes = request.app.router.routes
    return [method for method in _METHODS
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)]


def unavailable(message: str) -> JSONResponse:
    return JSONResponse(_body(message), status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


def _backend_down(request: Request, exc: Exception) -> JSONResponse:
    """The server log gets the full reason; the client, what to do (no internal addresses)."""
    from producers.retrieve import RetrievalTimeout

    log.warning("answered 503 to %s %s: %s", request.method, request.url.path, exc)
    if isinstance(exc, RetrievalTimeout):
        return unavailable(f"no worker answered in time; retry in {RETRY_AFTER_S} s")
    if request.method == "GET" or request.url.path.endswith("/retrieve"):
        what = "nothing was changed"
    elif request.url.path.endswith("/turns"):
        what = "the turns may not be stored: send them again with the same turn_ids (duplicates are dropped)"
    else:
        what = "it may be partly done: repeat it (safe to repeat)"
    return unavailable(f"Redis is unavailable ({type(exc).__name__}); {what}; retry in {RETRY_AFTER_S} s")


def _store_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("answered 503 to %s %s: vector store: %s", request.method, request.url.path, exc)
    return unavailable(f"the vector store is unavailable ({type(exc).__name__}); retry in {RETRY_AFTER_S} s")


def _nested(_request: Request, _exc: Exception) -> JSONResponse:
    return JSONResponse(_body("invalid input; nothing was changed", [("body", "is nested too deeply")]),
                        status_code=422)


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(_body("internal error; the server log has the details"), status_code=500)


def install(app: FastAPI) -> None:
    import redis
    from kombu.exceptions import OperationalError

    from memoryos_workers.vectorstore import VectorStoreError
    from producers.cluster import TRANSIENT_ERRORS
    from producers.errors import RedisUnavailableError
    from producers.replication import ReplicationError
    from producers.retrieve import RetrievalTimeout

    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(InvalidInput, _invalid)
    app.add_exception_handler(HTTPException, _http)
    # A replica that did not acknowledge in time, or a cluster failing over: the same advice (send again).
    for kind in (RedisUnavailableError, RetrievalTimeout, redis.ConnectionError, redis.TimeoutError,
                 OperationalError, ReplicationError, *TRANSIENT_ERRORS):
        app.add_exception_handler(kind, _backend_down)
    app.add_exception_handler(VectorStoreError, _store_down)
    app.add_exception_handler(RecursionError, _nested)
    app.add_exception_handler(Exception, _unexpected)
