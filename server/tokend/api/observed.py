"""Standard gRPC metrics for the services tokend does not own (Health, Reflection).

TokenService records its own in servicer.rpc; these are wrapped method by method when
added (decoding.add_guarded), not by a server interceptor, which would cost every call.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from tokend import metrics


class _Counting:
    """The servicer context, counting the messages written through it."""

    def __init__(self, context: grpc.aio.ServicerContext, sent: Any) -> None:
        self._context = context
        self._sent = sent

    async def write(self, message: Any) -> None:
        await self._context.write(message)
        self._sent.inc()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def _code(context: grpc.aio.ServicerContext, failed: BaseException | None) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if failed is None or isinstance(failed, StopAsyncIteration):
        return grpc.StatusCode.OK
    if isinstance(failed, asyncio.CancelledError):  # the client left
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def observe(service: str, name: str, handler: Any) -> Any:
    """`handler` (an RpcMethodHandler) with its behavior recorded in metrics.GRPC_*."""
    standard = metrics.GrpcMethod(service, name, client_streaming=handler.request_streaming,
                                  server_streaming=handler.response_streaming)
    kind = ("stream_" if handler.request_streaming else "unary_") + (
        "stream" if handler.response_streaming else "unary")
    behavior = getattr(handler, kind)

    def requests(source: Any) -> Any:
        if not handler.request_streaming:
            return source

        async def counted() -> AsyncIterator[Any]:
            async for request in source:
                standard.received.inc()
                yield request
        return counted()

    if inspect.isasyncgenfunction(behavior):
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            began, failed = time.perf_counter(), None
            standard.started()
            try:
                async for response in behavior(requests(request), context):
                    standard.sent.inc()
                    yield response
            except BaseException as exc:
                failed = exc
                raise
            finally:
                standard.ended(_code(context, failed), time.perf_counter() - began)
        return handler._replace(**{kind: stream})

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        began, failed = time.perf_counter(), None
        standard.started()
        try:
            return await behavior(requests(request), _Counting(context, standard.sent))
        except BaseException as exc:
            failed = exc
            raise
        finally:
            standard.ended(_code(context, failed), time.perf_counter() - began)
    return handler._replace(**{kind: call})
