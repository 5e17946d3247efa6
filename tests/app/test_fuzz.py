"""Property-based fuzzing of the whole HTTP API from its own OpenAPI schema (schemathesis).

The real server (uvicorn, lifespan and all) on loopback serves the tiny test models; every
operation in its /openapi.json gets ``FUZZ_EXAMPLES`` generated requests (default 25, about
half valid and half invalid by the schema), derandomized so CI sends the same requests every run;
``make fuzz`` runs 500. Every response must be no 5xx, problem+json for every error, and
conform to the schema: documented status, content type, headers and body.

Jobs are only queued (``GAN_EMBEDDED_WORKER=false``): a fuzzed POST /v1/jobs never trains.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.core.result import Ok

# Not GAN_-prefixed: that prefix is the app's settings, and this is the test's own knob.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
PROBLEM = "application/problem+json"
API_KEY = "fuzz-admin-key"
CONFIG = schemathesis.Config.from_dict(
    {
        # The admin routes declare bearer auth: valid cases carry the key, and the ignored_auth
        # check sends them without it and with a wrong one, which must be 401.
        "auth": {"openapi": {"GAN_API_KEY": {"bearer": API_KEY}}},
        "checks": {
            # Any 4xx refuses a request the schema forbids: 413 (n over GAN_MAX_N) included.
            "negative_data_rejection": {"expected-statuses": ["4XX"]},
            # A schema cannot state every rule (seed or latent, labels only for conditional
            # models, limits from settings, readable images), so a schema-valid request may
            # rightly be refused; what must hold then is a 4xx problem, checked below.
            "positive_data_acceptance": {"enabled": False},
        },
    }
)


def errors_are_problems(ctx: CheckContext, response: Response, case: Case) -> None:
    """Every 4xx and 5xx is RFC 9457 problem+json whose body repeats its status."""
    if response.status_code < 400:
        return
    ctype = response.headers.get("content-type", [""])[0]
    assert ctype == PROBLEM, f"{response.status_code} answered with content-type {ctype!r}"
    body = response.json()
    assert body["status"] == response.status_code, body
    assert body["title"] and body["detail"], body


def test_the_api_honours_its_schema(
    models_dir: Path, start_server: Callable[..., Any], subtests: pytest.Subtests
) -> None:
    server = start_server(
        GAN_MODELS_DIR=str(models_dir), GAN_EMBEDDED_WORKER="false", GAN_API_KEY=API_KEY
    )
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=CONFIG)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # the app's own schema must be usable
        operations.append(result.ok())
    assert len(operations) >= 15, [op.label for op in operations]

    # One test, one subtest per operation, rather than schemathesis.pytest.from_fixture: that
    # rewrites Node._nodeid, which pytest 9 no longer has. Binary 200s (png, gif, webp, npy,
    # zip) are documented without a schema, so only their status and content type are checked.
    for operation in operations:
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases)
        def fuzz(case: Case) -> None:
            case.call_and_validate(additional_checks=[errors_are_problems])

        with subtests.test(msg=operation.label):
            fuzz()

    assert server.proc.poll() is None, "the server died under fuzzing"
