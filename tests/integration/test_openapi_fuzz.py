"""schemathesis against the live gateway's own OpenAPI document (/openapi.json): every
documented operation, fed generated requests (valid and not), never answers 5xx.

Bounded: a few examples per operation, with and without an admin token, on one real
`gateway serve` process; well under a minute."""

from __future__ import annotations

import time

import httpx2 as httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.support.processes import run_gateway
from tests.support.serving import serve_process

EXAMPLES_PER_OPERATION = 30
BUDGET_S = 60


def test_no_documented_operation_answers_a_server_error(tmp_path):
    """A bounded schemathesis run over every operation of /openapi.json finds no 5xx."""
    with serve_process(tmp_path) as server:
        minted = run_gateway("token", "--team", "demo", "--scope", "gateway:admin", cwd=tmp_path)
        assert minted.returncode == 0, minted.stderr
        admin = {"Authorization": f"Bearer {minted.stdout.split()[-1]}"}
        document = httpx.get(f"{server.origin}/openapi.json").json()
        schema = schemathesis.openapi.from_dict(document)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 10, [op.label for op in operations]
        started = time.monotonic()
        failures: list[str] = []
        calls = 0
        for operation in operations:
            calls += fuzz(operation, server.origin, admin, failures)
            if time.monotonic() - started > BUDGET_S:
                pytest.fail(f"over the {BUDGET_S} s budget after {operation.label}")
        assert failures == [], failures
        assert calls >= len(operations) * 2
        assert server.process.poll() is None, server.stderr()
        assert "Traceback" not in server.stderr()


def fuzz(operation, origin: str, admin: dict[str, str], failures: list[str]) -> int:
    """Run one operation's generated cases with and without the admin token; the calls made.
    A 5xx is noted in `failures` with the request that caused it."""
    calls = 0

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,  # no example database left in the work tree
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:
        nonlocal calls
        for headers in (admin, None):
            calls += 1
            response = case.call(base_url=origin, headers=headers, timeout=10)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} body={case.body!r:.200} -> "
                    f"{response.status_code}: {response.text[:300]}"
                )

    run()
    return calls
