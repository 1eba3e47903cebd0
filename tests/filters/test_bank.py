"""Filter-bank files: bitwise round trip, integrity, compatibility, no pickle."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from torch import nn

from lethe.errors import (
    BankClassCountError,
    BankFormatError,
    BankIntegrityError,
    BankModelMismatchError,
    BankShapeError,
    ClassSelectionError,
    NonFiniteError,
)
from lethe.filters import BANK_FORMAT, FilterBank
from lethe.models import ModelSpec, create_model


def _model(seed: int = 0, classes: int = 10) -> nn.Module:
    return create_model(ModelSpec("resnet18", classes, 1, (16, 16)), seed=seed)


def _trained_like(bank: FilterBank, seed: int = 0) -> FilterBank:
    g = torch.Generator().manual_seed(seed)
    return bank.with_alpha({k: torch.rand(v.shape, generator=g) for k, v in bank.alpha.items()})


def test_round_trip_is_bitwise(tmp_path: Path) -> None:
    model = _model()
    bank = _trained_like(FilterBank.init(model, 10, class_names=[f"c{i}" for i in range(10)]))
    p = bank.save(tmp_path / "bank.safetensors")
    loaded = FilterBank.load(p, model)
    assert loaded.digest == bank.digest
    assert loaded.class_names == bank.class_names
    assert loaded.targets == bank.targets
    for name, a in bank.alpha.items():
        assert torch.equal(loaded.alpha[name], a)
    # Saving the loaded bank gives the identical file.
    assert loaded.to_bytes() == p.read_bytes()
    m = loaded.manifest
    assert m["format"] == BANK_FORMAT and m["digest"] == bank.digest
    assert m["base_model_digest"] == bank.base_digest


def test_file_is_plain_safetensors_without_pickle(tmp_path: Path) -> None:
    bank = _trained_like(FilterBank.init(_model(), 10))
    raw = bank.save(tmp_path / "b.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__")
    assert set(meta) == {"lethe.manifest"}
    json.loads(meta["lethe.manifest"])
    # Every byte after the header belongs to a declared float32 tensor: nothing else is stored.
    total = sum(v["data_offsets"][1] - v["data_offsets"][0] for v in header.values())
    assert all(v["dtype"] == "F32" for v in header.values())
    assert 8 + n + total == len(raw)


def test_tampered_tensor_is_detected(tmp_path: Path) -> None:
    bank = _trained_like(FilterBank.init(_model(), 10))
    p = bank.save(tmp_path / "b.safetensors")
    raw = bytearray(p.read_bytes())
    raw[-3] ^= 0x01  # one bit of one alpha value
    p.write_bytes(bytes(raw))
    with pytest.raises(BankIntegrityError, match="does not match"):
        FilterBank.load(p)


def test_tampered_manifest_is_detected(tmp_path: Path) -> None:
    bank = _trained_like(FilterBank.init(_model(), 10))
    p = bank.save(tmp_path / "b.safetensors")
    raw = p.read_bytes().replace(b'\\"9\\"', b'\\"X\\"')  # rename the last class
    assert raw != p.read_bytes()
    p.write_bytes(raw)
    with pytest.raises(BankIntegrityError):
        FilterBank.load(p)


def test_bank_for_another_model_is_refused(tmp_path: Path) -> None:
    p = FilterBank.init(_model(seed=0), 10).save(tmp_path / "b.safetensors")
    with pytest.raises(BankModelMismatchError, match="trained for model"):
        FilterBank.load(p, _model(seed=1))


def test_wrong_class_count_is_refused(tmp_path: Path) -> None:
    model = _model()
    with pytest.raises(BankClassCountError):
        FilterBank.init(model, 7)
    p = FilterBank.init(_model(classes=7), 7).save(tmp_path / "b.safetensors")
    with pytest.raises(BankShapeError):  # BankClassCountError is a BankShapeError
        FilterBank.load(p, model)


def test_other_architecture_is_refused(tmp_path: Path) -> None:
    p = FilterBank.init(_model(), 10).save(tmp_path / "b.safetensors")
    other = create_model(ModelSpec("resnet10t", 10, 1, (16, 16)), seed=0)
    with pytest.raises(BankShapeError):
        FilterBank.load(p, other)


def test_not_a_bank(tmp_path: Path) -> None:
    p = tmp_path / "junk.safetensors"
    p.write_bytes(b"not a safetensors file at all")
    with pytest.raises(BankFormatError):
        FilterBank.load(p)
    with pytest.raises(BankFormatError, match="not found"):
        FilterBank.load(tmp_path / "missing.safetensors")


def test_forget_set_validation() -> None:
    bank = FilterBank.init(_model(), 10)
    with pytest.raises(ClassSelectionError, match="unknown class id 10"):
        bank.scales([10])
    with pytest.raises(ClassSelectionError, match="unknown class id -1"):
        bank.scales(-1)
    with pytest.raises(ClassSelectionError, match="empty"):
        bank.scales([])
    with pytest.raises(ClassSelectionError, match="integers"):
        bank.scales(["three"])  # type: ignore[list-item]
    assert bank.forget_set([3, 1, 3]) == (1, 3)
    assert bank.class_ids(["2", 5]) == (2, 5)
    with pytest.raises(ClassSelectionError, match="this bank has no class 'cat'; known: "):
        bank.class_ids(["cat"])


def test_nan_or_out_of_range_alpha_is_refused() -> None:
    bank = FilterBank.init(_model(), 10)
    name = bank.target_names[0]
    bad = bank.alpha
    bad[name][0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="NaN"):
        bank.with_alpha(bad)
    bad[name][0, 0] = 1.5
    with pytest.raises(NonFiniteError, match="outside"):
        bank.with_alpha(bad)


def test_alpha_property_returns_copies() -> None:
    bank = FilterBank.init(_model(), 10)
    name = bank.target_names[0]
    a = bank.alpha
    a[name].zero_()
    assert bool((bank.alpha[name] == 1).all())
