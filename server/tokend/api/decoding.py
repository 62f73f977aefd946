"""Request decoding that answers bytes which are no valid message with INVALID_ARGUMENT.

grpc.aio runs a method's request_deserializer before the handler, and answers whatever
it raises with UNKNOWN, the exception's text ("Unexpected <class DecodeError>: ...") and a
traceback in the log: for any caller, before admission, audit or metrics. So every method
tokend serves decodes through `decoder`, which returns a `Malformed` value instead of
raising. TokenService handlers refuse it after admission (servicer.rpc); the services
tokend does not own (health, reflection) are wrapped by `add_guarded`, which refuses it
before their code runs. grpc offers no hook for this short of an interceptor, which
would cost every call (admission.py says why there is none).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import message

from tokend import metrics
from tokend.api import errors
from tokend.api.observed import observe

MESSAGE = ("the request is not a valid protobuf message: a string that is not UTF-8, "
           "nesting deeper than protobuf allows, or a truncated or wrongly typed field")


class Malformed:
    """What the handler gets in place of a request whose bytes could not be decoded."""

    __slots__ = ()


MALFORMED = Malformed()


def decoder(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return parse(data)
        except (message.DecodeError, RecursionError):
            return MALFORMED  # the parser's text stays out of answers and logs

    return decode


def add_guarded(add: Callable[[Any, Any], None], servicer: Any, server: grpc.aio.Server
                ) -> None:
    """`add(servicer, server)` (a generated add_*_to_server), with each method's requests
    decoded by `decoder` and a malformed one refused with INVALID_ARGUMENT."""
    collector = _Collector()
    add(servicer, collector)
    for service, handlers in collector.services.items():
        short = service.rsplit(".", 1)[-1]
        guarded = {name: observe(service, name, _guard(f"{short}/{name}", handler))
                   for name, handler in handlers.items()}
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, guarded),))
        server.add_registered_method_handlers(service, guarded)


class _Collector:
    """Stands in for the server in a generated add_*_to_server: keeps its handlers."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, Any]] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # the same handlers arrive through add_registered_method_handlers

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.services[service] = handlers


def _guard(label: str, handler: Any) -> Any:
    kind = ("stream_" if handler.request_streaming else "unary_") + (
        "stream" if handler.response_streaming else "unary")
    behavior = getattr(handler, kind)
    refuse = _refuser(label)
    if handler.request_streaming:
        wrapped = _streaming_requests(behavior, refuse)
    else:
        wrapped = _single_request(behavior, refuse)
    return handler._replace(request_deserializer=decoder(handler.request_deserializer),
                            **{kind: wrapped})


Refuse = Callable[[grpc.aio.ServicerContext], Any]


def _refuser(label: str) -> Refuse:
    async def refuse(context: grpc.aio.ServicerContext) -> None:
        metrics.MALFORMED_REQUESTS.labels(label).inc()
        await errors.abort(context, errors.failure_for(errors.MalformedRequest(MESSAGE), label),
                           label)

    return refuse


def _single_request(behavior: Any, refuse: Refuse) -> Any:
    if inspect.isasyncgenfunction(behavior):
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if isinstance(request, Malformed):
                await refuse(context)
            async for response in behavior(request, context):
                yield response
        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Malformed):
            await refuse(context)
        try:
            return await behavior(request, context)
        except NotImplementedError:  # generated base method (Health/List): no traceback
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "method not implemented")
    return call


def _streaming_requests(behavior: Any, refuse: Refuse) -> Any:
    async def checked(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
                      ) -> AsyncIterator[Any]:
        async for request in requests:
            if isinstance(request, Malformed):
                await refuse(context)
            yield request

    if inspect.isasyncgenfunction(behavior):
        async def stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for response in behavior(checked(requests, context), context):
                yield response
        return stream

    async def call(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        return await behavior(checked(requests, context), context)
    return call
