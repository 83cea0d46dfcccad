"""A small client for the Docker Engine API: the calls route discovery and server management need.

It speaks HTTP through ``httpx`` over the daemon's unix socket (or TCP), on Trio. Paths carry no API version:
the daemon then answers with its own, and every field used here has been stable since API 1.25. Anything
that goes wrong between us and the daemon (socket missing, daemon restarting, a non-2xx answer) becomes one
:class:`DockerError` whose message says what happened, never an ``httpx`` traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

import httpx

logger = logging.getLogger(__name__)
# httpx logs every request at INFO; a poll every few seconds would drown the proxy's one-line-per-event log.
logging.getLogger("httpx").setLevel(logging.WARNING)

REQUEST_TIMEOUT = 10.0  # seconds for one ordinary request; a container stop adds its own grace to it


class DockerError(Exception):
    """The daemon could not be reached, or it refused a request (the message says which and why)."""


def _transport_and_url(endpoint: str) -> tuple[httpx.AsyncHTTPTransport, str]:
    if endpoint.startswith("unix://"):
        return httpx.AsyncHTTPTransport(uds=endpoint.removeprefix("unix://")), "http://docker"
    for scheme in ("tcp://", "http://"):
        if endpoint.startswith(scheme):
            return httpx.AsyncHTTPTransport(), "http://" + endpoint.removeprefix(scheme).rstrip("/")
    raise ValueError(f"unsupported Docker endpoint {endpoint!r}: use unix:///path or tcp://host:port")


def _label_filters(labels: Sequence[str], **extra: Sequence[str]) -> str:
    filters: dict[str, list[str]] = {"label": list(labels)}
    filters.update({key: list(values) for key, values in extra.items()})
    return json.dumps(filters)


class DockerEngine:
    """One connection pool to a Docker daemon; use as ``async with DockerEngine(endpoint) as engine``."""

    def __init__(self, endpoint: str) -> None:
        transport, base_url = _transport_and_url(endpoint)
        self.endpoint = endpoint
        self._client = httpx.AsyncClient(transport=transport, base_url=base_url, timeout=REQUEST_TIMEOUT)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections to the daemon."""
        await self._client.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        limit: float = REQUEST_TIMEOUT,
        ok: tuple[int, ...] = (),
    ) -> httpx.Response:
        try:
            response = await self._client.request(method, path, params=params, timeout=limit)
        except httpx.HTTPError as exc:
            raise DockerError(f"{method} {path}: {_describe(exc)}") from None
        if response.is_success or response.status_code in ok:
            return response
        raise DockerError(f"{method} {path}: HTTP {response.status_code}: {_message(response)}")

    async def version(self) -> dict[str, Any]:
        """``GET /version``: the daemon's version and API version (a cheap "is it there" call)."""
        return _json_object(await self._request("GET", "/version"))

    async def list_containers(self, labels: Sequence[str] = (), *, all: bool = False) -> list[dict[str, Any]]:
        """``GET /containers/json``: running containers (``all`` adds stopped ones) carrying every label."""
        params = {"filters": _label_filters(labels)}
        if all:
            params["all"] = "true"
        response = await self._request("GET", "/containers/json", params=params)
        try:
            body = response.json()
        except ValueError:
            raise DockerError("GET /containers/json: the answer is not JSON") from None
        if not isinstance(body, list):
            raise DockerError("GET /containers/json: the answer is not a JSON array")
        return [item for item in body if isinstance(item, dict)]

    async def inspect(self, container: str) -> dict[str, Any] | None:
        """``GET /containers/{id}/json``: the container's details; ``None`` when there is none."""
        response = await self._request("GET", f"/containers/{container}/json", ok=(404,))
        if response.status_code == 404:
            return None
        return _json_object(response)

    async def start(self, container: str) -> None:
        """``POST /containers/{id}/start``; a container that already runs is fine."""
        await self._request("POST", f"/containers/{container}/start", ok=(304,))

    async def stop(self, container: str, grace: float) -> None:
        """``POST /containers/{id}/stop``: SIGTERM (the image's stop signal), SIGKILL after ``grace`` s."""
        seconds = max(0, round(grace))
        await self._request(
            "POST",
            f"/containers/{container}/stop",
            params={"t": str(seconds)},
            limit=seconds + REQUEST_TIMEOUT,
            ok=(304,),
        )

    @asynccontextmanager
    async def events(
        self, labels: Sequence[str] = (), actions: Sequence[str] = ()
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """``GET /events`` for containers: the stream is open (subscribed) once this context is entered.

        Iterating yields one decoded event per line; the iteration ends when the daemon closes the stream.
        """
        params = {"filters": _label_filters(labels, type=["container"], event=list(actions))}
        # No read timeout: an idle stream is normal, a dead daemon closes the socket.
        timeout = httpx.Timeout(REQUEST_TIMEOUT, read=None)
        try:
            async with self._client.stream("GET", "/events", params=params, timeout=timeout) as response:
                if not response.is_success:
                    await response.aread()
                    raise DockerError(f"GET /events: HTTP {response.status_code}: {_message(response)}")
                yield _decode_events(response)
        except httpx.HTTPError as exc:
            raise DockerError(f"GET /events: {_describe(exc)}") from None


async def _decode_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    try:
        async for line in response.aiter_lines():
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                logger.warning("docker event is not JSON line=%r", line[:200])
                continue
            if isinstance(event, dict):
                yield event
    except httpx.HTTPError as exc:
        raise DockerError(f"GET /events: {_describe(exc)}") from None


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise DockerError(f"{response.request.url.path}: the answer is not JSON") from None
    if not isinstance(body, dict):
        raise DockerError(f"{response.request.url.path}: the answer is not a JSON object")
    return body


def _message(response: httpx.Response) -> str:
    """The daemon's error text (it answers ``{"message": ...}``), else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return response.text[:200]


def _describe(exc: httpx.HTTPError) -> str:
    """An httpx error as one line: its own text, or the OS error under it (``No such file or directory``)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__
