"""The Lethe facade is thin (DEVELOPERS.md "The layers of lethe.workflow"): every public method
forwards to one service method (``Forward`` keeps its exact signature for mypy, which CI runs),
its docstring points there, and ``lt.services`` hands out the very objects the methods call."""

from __future__ import annotations

import inspect
from pathlib import Path

from lethe.workflow import (
    ApplyService,
    ExportService,
    KeyService,
    Lethe,
    ModelService,
    ReferenceService,
    RequestService,
)
from lethe.workflow._forward import Forward
from lethe_audit.statements import RequestStatus

from .conftest import MODEL

_SERVICES = (
    ModelService,
    RequestService,
    ReferenceService,
    ApplyService,
    ExportService,
    KeyService,
)
#: What the facade itself does (opening, its own state) rather than forward.
_OWN = {"open", "init", "close", "settings", "log", "keyring", "store", "engine", "services"}
_OWN |= {"verifiers", "model_dir"}


def test_every_forwarded_method_has_the_service_signature_and_points_to_it() -> None:
    forwarded = {n: v for n, v in vars(Lethe).items() if isinstance(v, Forward)}
    assert {"file", "list", "register_model", "export_onnx", "rollback"} <= set(forwarded)
    for name, fwd in forwarded.items():
        target = getattr(Lethe, name)  # on the class: the service function itself
        owner = target.__qualname__.split(".")[0]
        assert fwd.__doc__ == f"See :meth:`{target.__qualname__}`.", name
        assert owner in {s.__name__ for s in _SERVICES} | {"VersionService"}, name
        assert target.__doc__ and len(target.__doc__) > 20, f"{owner}.{target.__name__}"


def test_the_other_public_methods_are_the_facades_own_or_point_to_a_service() -> None:
    for name, value in vars(Lethe).items():
        if name.startswith("_") or isinstance(value, Forward) or name in _OWN:
            continue
        doc = inspect.getdoc(value) or ""
        assert doc.startswith("See :meth:`") and len(doc.splitlines()) == 1, name
        service = doc.removeprefix("See :meth:`").split(".")[0]
        assert service in {s.__name__ for s in _SERVICES}, name


def test_methods_are_bound_to_the_services_the_facade_exposes(project_dir: Path) -> None:
    with Lethe.open(project_dir) as lt:
        services = lt.services
        assert lt.file.__self__ is services.requests and lt.list.__self__ is services.requests
        assert lt.register_model.__self__ is services.models
        assert lt.rollback.__self__ is services.applies.versions
        assert lt.export_bundle.__self__ is services.exports
        req = lt.file(subject="ann@example.com", classes=[3], legal_basis="gdpr-17-1-b")
        assert services.requests.get(req.id) == lt.get(req.id)
        assert [r.id for r in lt.list(status=[RequestStatus.RECEIVED], model=MODEL)] == [req.id]


def test_the_cli_status_choices_are_the_enum() -> None:
    from lethe.cli._requests import request_list

    (opt,) = [p for p in request_list.params if p.name == "status"]
    assert list(opt.type.choices) == [s.value for s in RequestStatus]  # type: ignore[attr-defined]
