"""Class selection has one rule set (`lethe.classes.resolve_class_ids`): a request's classes,
a depth reference's held-out class and a filter bank's selection resolve alike, and refuse
alike with one typed error."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from lethe.classes import resolve_class_ids
from lethe.errors import ClassSelectionError, RequestError, UnknownClassError
from lethe.filters import FilterBank
from lethe.models import ModelSpec, create_model
from lethe.workflow._reference import _held_out
from lethe.workflow._requests import resolve_classes
from lethe_audit.store import ModelRow

NAMES = ("cat", "dog", "7", "bird")  # "7" is a name: it means class 2, not id 7
ACCEPTED: list[tuple[Any, tuple[int, ...]]] = [
    (["dog"], (1,)),
    ([1], (1,)),
    (["1"], (1,)),
    (["7"], (2,)),  # a name wins over the id it spells
    ([np.int64(3)], (3,)),
    ([torch.tensor(0)], (0,)),
    (["dog", 1, "1"], (1,)),  # duplicates collapse
    ([3, "cat"], (0, 3)),  # sorted
    ("bird", (3,)),  # one value
    (2, (2,)),
]
REFUSED: list[tuple[Any, str]] = [
    ([4], r"classes 0\.\.3, not 4"),
    ([-1], r"classes 0\.\.3, not -1"),
    (["4"], r"classes 0\.\.3, not 4"),
    (["horse"], "no class 'horse'"),
    (["\u00b2"], "no class"),  # a Unicode digit is not an id
    ([True], "is not a class"),
    ([1.0], "must be names or ids"),
]


def _row() -> ModelRow:
    return ModelRow(name="m", class_names=json.dumps(NAMES))


def _bank() -> FilterBank:
    model = create_model(ModelSpec("resnet18", len(NAMES), 1, (16, 16)), seed=0)
    return FilterBank.init(model, len(NAMES), class_names=NAMES)


def _reference(value: Any) -> tuple[int, ...]:
    """The held-out class of a depth reference (one class, every class has samples)."""
    c, _ = _held_out(NAMES, np.arange(len(NAMES)), value)
    return (c,)


@pytest.fixture(scope="module")
def bank() -> FilterBank:
    return _bank()


@pytest.mark.parametrize(("given", "ids"), ACCEPTED)
def test_every_caller_resolves_alike(given: Any, ids: tuple[int, ...], bank: FilterBank) -> None:
    assert resolve_class_ids(given, NAMES) == ids
    assert resolve_classes(_row(), given) == ids
    single = [given] if isinstance(given, (str, int)) else given
    assert bank.class_ids(single) == ids
    if len(single) == 1:  # a depth reference holds out one class
        assert _reference(single[0]) == ids


@pytest.mark.parametrize(("given", "message"), REFUSED)
def test_every_caller_refuses_alike(given: Any, message: str, bank: FilterBank) -> None:
    callers = [
        lambda: resolve_class_ids(given, NAMES),
        lambda: resolve_classes(_row(), given),
        lambda: bank.class_ids(given),
        lambda: _reference(given[0]),
    ]
    for call in callers:
        with pytest.raises(UnknownClassError, match=message) as err:
            call()
        # One error, caught as each caller's family was before.
        assert isinstance(err.value, RequestError) and isinstance(err.value, ClassSelectionError)


def test_messages_name_the_owner_and_the_callers_hint() -> None:
    with pytest.raises(UnknownClassError, match="model 'digits' has no class 'x'; see NAMES"):
        resolve_class_ids(["x"], NAMES, owner="model 'digits'", hint="see NAMES")
    with pytest.raises(UnknownClassError, match="lethe model show m"):
        resolve_classes(_row(), ["x"])


def test_the_callers_own_rules_stay_theirs(bank: FilterBank) -> None:
    """Empty and every-class selections are the caller's rule, not resolution's."""
    assert resolve_class_ids([], NAMES) == ()
    with pytest.raises(RequestError, match="at least one class"):
        resolve_classes(_row(), [])
    with pytest.raises(RequestError, match="every class"):
        resolve_classes(_row(), list(NAMES))
    with pytest.raises(ClassSelectionError, match="empty"):
        bank.class_ids([])
