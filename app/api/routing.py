"""A route class for endpoints that take the request alone and return a Response."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class RequestRoute(APIRoute):
    """Calls an ``async def endpoint(request: Request) -> Response`` directly.

    Such an endpoint reads its own body (``json_body``), so FastAPI's per-request work of
    solving parameters, headers, cookies and dependencies finds nothing to do; on the hot
    route it costs about a tenth of the event loop's time per request (README, Benchmarks).
    The route is still an APIRoute: OpenAPI documents it from the same declaration. Any
    other endpoint gets FastAPI's own handler.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        if not _takes_request_alone(self):
            return super().get_route_handler()
        return self.endpoint


def _takes_request_alone(route: APIRoute) -> bool:
    d = route.dependant
    params = inspect.signature(route.endpoint).parameters
    return (
        inspect.iscoroutinefunction(route.endpoint)
        and len(params) == 1
        and d.request_param_name is not None
        and not (d.path_params or d.query_params or d.header_params or d.cookie_params)
        and not (d.body_params or d.dependencies)
        and route.response_model is None
    )
