"""The service load benchmark at toy size, against PostgreSQL when the test server is set
(else SQLite): concurrent app clients with idempotency keys, each raced by a second client
retrying the same keys while the first filings are in flight, then retries; no duplicate, the
log grows by one entry per filing and verifies; all of it within a deadline."""

from __future__ import annotations

import os

import pytest
from benchmarks.bench_serve import LoadDeadlineError, run_load

from tests.serve.conftest import Service


def _check(service: Service, clients: int, filings: int) -> None:
    from lethe.serve import create_token

    size0 = service.lt.log.size()
    tokens = [
        create_token(service.lt.engine, name=f"load-{c}", role="app")[0] for c in range(clients)
    ]
    res = run_load(service.url, tokens, filings, deadline_s=120)
    n = clients * filings
    assert res["filings"] == res["distinct_ids"] == n and res["calls"] == 3 * n
    assert res["race_mismatches"] == res["retry_mismatches"] == 0
    assert len(service.lt.list()) == n
    assert service.lt.log.size() - size0 == n
    service.lt.verify_log()


def test_load_sqlite(service: Service) -> None:
    if os.environ.get("LETHE_TEST_DATABASE_URL"):
        pytest.skip("PostgreSQL is set: test_load_postgresql covers the concurrent path")
    _check(service, clients=3, filings=8)


def test_load_postgresql(pg_service: Service) -> None:
    _check(pg_service, clients=4, filings=10)


def test_load_past_its_deadline_fails_clearly(service: Service) -> None:
    from lethe.serve import create_token

    token = create_token(service.lt.engine, name="load-late", role="app")[0]
    with pytest.raises(LoadDeadlineError, match="past its deadline"):
        run_load(service.url, [token], 50, deadline_s=0.05)
