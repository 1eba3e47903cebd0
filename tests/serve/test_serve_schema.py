"""Schemathesis against the app's own OpenAPI schema, over real HTTP, at test size: positive
and negative data for every operation, with a token of a role the operation allows. No 500;
every response matches the schema (status code, content type, body, headers)."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.serve.conftest import Service

_ROLE = {
    "POST /v1/requests": "app",
    "GET /v1/log/bundle": "auditor",
    "POST /v1/subjects": "app",
    "POST /v1/fides/webhook": "app",
    "POST /v1/fides/resume": "operator",
}
_EXAMPLES = 12


def _role(label: str) -> str:
    if label in _ROLE:
        return _ROLE[label]
    if label.startswith("POST /v1/models/"):
        return "operator"
    if label.startswith("POST /v1/requests/"):
        return "dpo"
    return "auditor"


def _fuzz(op: Any, mode: GenerationMode, url: str, headers: dict[str, str]) -> None:
    @settings(
        max_examples=_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        case.call_and_validate(
            base_url=url,
            headers=headers,
            excluded_checks=[schemathesis.checks.positive_data_acceptance],
        )

    try:
        check()
    except Unsatisfiable:
        # An operation without parameters or body (health, checkpoint, ...) has no negative
        # input to generate; its positive run covered it.
        if mode is not GenerationMode.NEGATIVE:
            raise


def test_schemathesis_no_server_error_and_responses_match_the_schema(service: Service) -> None:
    from lethe.serve import create_app

    schema = schemathesis.openapi.from_dict(create_app(service.lt).openapi())
    ran = 0
    for result in schema.get_all_operations():
        op = result.ok()  # type: ignore[union-attr]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(op, mode, service.url, service.headers(_role(op.label)))
            ran += 1
    assert ran >= 2 * 10  # every operation, both modes


def test_openapi_links_chain_a_filing_to_its_follow_ups(service: Service) -> None:
    from lethe.serve import create_app

    paths = create_app(service.lt).openapi()["paths"]
    links = paths["/v1/requests"]["post"]["responses"]["201"]["links"]
    ops = {m["operationId"]: p for p, ms in paths.items() for m in ms.values()}
    assert {ops[link["operationId"]] for link in links.values()} >= {
        "/v1/requests/{request_id}",
        "/v1/requests/{request_id}/approve",
        "/v1/requests/{request_id}/reject",
        "/v1/requests/{request_id}/receipt",
    }
    assert {link["parameters"]["request_id"] for link in links.values()} == {"$response.body#/id"}


def test_apply_and_erase_answers_have_a_schema(service: Service) -> None:
    from lethe.serve import create_app

    schema = create_app(service.lt).openapi()
    for what in ("apply", "erase"):
        ok = schema["paths"][f"/v1/models/{{model}}/{what}"]["post"]["responses"]["200"]
        assert ok["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ApplyOut"
        }
    out = schema["components"]["schemas"]["ApplyOut"]
    assert {"outcome", "phase", "request_ids", "metrics", "verdict", "log_index"} <= set(
        out["required"]
    )
    assert {"applied_by", "depth", "erase"} <= set(out["properties"])


def test_schemathesis_stateful_no_server_error_and_responses_match_the_schema(
    service: Service,
) -> None:
    """Scenarios that follow the schema's links (file -> get / approve / reject / shred /
    receipt): every step's answer matches the schema, none is a 500. Applies and erases are
    left out (a real apply per step would take the test's whole budget)."""
    from lethe.serve import create_app

    schema = schemathesis.openapi.from_dict(create_app(service.lt).openapi())
    schema = schema.exclude(tag="operator").exclude(path_regex="^/v1/fides/")
    # Only the schema's own links (no links Schemathesis would infer): they are under test.
    schema.config.phases.stateful.inference.algorithms = []
    seen: list[tuple[str, int]] = []  # (path called, status)
    filed: set[str] = set()  # ids of the requests the scenarios filed

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            headers = service.headers(_role(case.operation.label))
            return {"base_url": service.url, "headers": headers}

        def before_call(self, case: Any) -> None:
            if case.operation.label == "POST /v1/requests" and isinstance(case.body, dict):
                # A filing the project accepts (a known class), so the links have an id to
                # follow; the runs above fuzz the filing body itself.
                case.body.update(classes=["3"], legal_basis="gdpr-17-1-b")

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            seen.append((case.formatted_path, response.status_code))
            if response.status_code == 201 and case.formatted_path == "/v1/requests":
                filed.add(response.json()["id"])

        def validate_response(self, response: Any, case: Any, **kw: Any) -> None:
            case.validate_response(
                response,
                excluded_checks=[schemathesis.checks.positive_data_acceptance],
                transport_kwargs=kw or None,
                recorder=self.recorder,
            )

    Machine.run(
        settings=settings(
            max_examples=_EXAMPLES,
            stateful_step_count=4,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
    assert all(code < 500 for _, code in seen)
    # The links were followed: a filed request was read, decided or shredded by its real id.
    followed = [code for path, code in seen if path.split("/")[3:4] and path.split("/")[3] in filed]
    assert filed and followed and any(code == 200 for code in followed), seen
