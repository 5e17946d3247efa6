"""``FastJsonRoute``: JSON routes answered without FastAPI's per-request parameter solving.

The one bypass of the framework, kept because it wins by far more than this machine's noise:
``make bench``'s n=1 load on POST /v1/sample (wrk, 7 interleaved rounds, 2-CPU development
machine, 2026-12-04) reached 0.58 / 0.68 of /healthz at 32 / 64 clients with this route class
and 0.41 / 0.44 with FastAPI's handler (event loop 168 against 259 us per request), and 0.57 /
0.55 against 0.34 / 0.39 with the engines in the server process (README, Benchmarks).

A route qualifies when its endpoint is ``async``, returns a ``Response``, and takes one pydantic
body model, perhaps the ``Request``, and dependencies that read the lifespan state
(``app.api.deps.STATE``) or check the body is JSON (``require_json``). FastAPI still builds the
route and its OpenAPI entry from that same declaration; only the handler differs. It parses
and validates the body in one pass of pydantic-core (``model_validate_json``, which also says
where malformed JSON breaks) and reads the state straight from the request, where FastAPI's
handler reads the body, decodes it with the standard library, validates the result and solves
each dependency in turn, for a fifth of the event loop's time per request. Every other route
gets FastAPI's own handler.

    router = APIRouter(route_class=FastJsonRoute)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from app.api.deps import STATE, require_json

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class FastJsonRoute(APIRoute):
    def get_route_handler(self) -> Handler:
        plan = _plan(self)
        if plan is None:
            return super().get_route_handler()
        body_name, model, state_params = plan
        request_name = self.dependant.request_param_name
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            await require_json(request)
            kwargs: dict[str, Any] = {body_name: model.model_validate_json(await request.body())}
            if request_name:
                kwargs[request_name] = request
            state = request.state  # one lookup: each builds a new view of the scope's state
            for name, key in state_params:
                kwargs[name] = getattr(state, key)
            response: Response = await endpoint(**kwargs)
            return response

        return handler


def _plan(route: APIRoute) -> tuple[str, type[BaseModel], list[tuple[str, str]]] | None:
    """(body parameter, its model, [(parameter, state key)]) when the route qualifies."""
    d = route.dependant
    if not inspect.iscoroutinefunction(route.endpoint) or route.response_model is not None:
        return None
    if d.path_params or d.query_params or d.header_params or d.cookie_params:
        return None
    if len(d.body_params) != 1 or d.response_param_name:
        return None
    model = d.body_params[0].field_info.annotation
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    state_params = []
    for dep in d.dependencies:
        if dep.call is require_json and dep.name is None:
            continue  # the handler checks it first
        if dep.call not in STATE or dep.name is None or dep.dependencies:
            return None
        state_params.append((dep.name, STATE[dep.call]))
    return d.body_params[0].name, model, state_params
