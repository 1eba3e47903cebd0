"""Hand-checked cases for each metric definition (no models, no torch)."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

from lethe_audit.errors import EvaluationSetError, MetricsError
from lethe_audit.metrics import (
    ImageSet,
    class_accuracy,
    dataset_digest,
    js_divergence,
    max_abs_diff,
    mia_efficacy,
    probe_auc,
    softmax,
    zrf_score,
)
from lethe_audit.metrics._core import probe_split

LN2 = math.log(2.0)


def test_class_accuracy_on_known_logits() -> None:
    # argmax per row: 0, 1, 1, 2, 2, 0  vs labels 0, 1, 2, 2, 0, 0
    logits = np.array(
        [[5, 1, 0], [0, 3, 1], [0, 2, 1], [0, 0, 9], [1, 0, 2], [2, 2, 0]],  # last row: tie -> 0
        dtype=np.float32,
    )
    labels = np.array([0, 1, 2, 2, 0, 0])
    acc = class_accuracy(logits, labels, 3, frozenset({2}))
    assert acc.per_class == (2 / 3, 1.0, 0.5)
    assert acc.forget == 0.5  # class 2: rows 2 (wrong) and 3 (right)
    assert acc.retain == 3 / 4  # classes 0, 1: rows 0, 1, 5 right, row 4 wrong
    assert acc.counts == (3, 1, 2)


def test_class_accuracy_reports_none_for_empty_class() -> None:
    acc = class_accuracy(np.eye(3)[[0, 1]], np.array([0, 1]), 3, frozenset({1}))
    assert acc.per_class == (1.0, 1.0, None)


def test_class_accuracy_rejects_wrong_logit_width() -> None:
    with pytest.raises(MetricsError, match="number of outputs"):
        class_accuracy(np.zeros((2, 4)), np.array([0, 1]), 3, frozenset({1}))


def test_softmax_is_stable_for_huge_logits() -> None:
    p = softmax(np.array([[1000.0, 0.0], [-1000.0, -1000.0]]))
    np.testing.assert_allclose(p, [[1.0, 0.0], [0.5, 0.5]])


def test_js_matches_scipy_and_is_symmetric() -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(10), size=50)
    q = rng.dirichlet(np.ones(10) * 0.3, size=50)
    ours = js_divergence(p, q)
    # scipy returns the JS *distance*, the square root of the divergence (natural log).
    ref = np.array([jensenshannon(a, b) ** 2 for a, b in zip(p, q, strict=True)])
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(js_divergence(q, p), ours, rtol=1e-12)
    # And against the definition written out with scipy's KL (entropy(p, m) = KL(p‖m)).
    m = 0.5 * (p + q)
    direct = np.array(
        [0.5 * entropy(a, c) + 0.5 * entropy(b, c) for a, b, c in zip(p, q, m, strict=True)]
    )
    np.testing.assert_allclose(ours, direct, rtol=1e-10)


def test_js_allows_zeros_and_hits_its_bounds() -> None:
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    q = np.array([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    js = js_divergence(p, q)
    assert js[0] == pytest.approx(LN2, abs=1e-15)  # disjoint supports: the maximum, ln 2
    assert js[1] == 0.0 and js[2] == 0.0
    assert np.isfinite(js).all()


def test_js_is_not_the_reversed_kl_of_peer_code() -> None:
    # Peer ZRF code computes KL(m‖p) (F.kl_div(log p, m)); that is unbounded for disjoint
    # supports, while the standard JS is ln 2. Guard against "fixing" it into the wrong form.
    p = np.array([[0.9, 0.1]])
    q = np.array([[0.1, 0.9]])
    m = 0.5 * (p + q)
    reversed_form = 0.5 * entropy(m[0], p[0]) + 0.5 * entropy(m[0], q[0])
    assert js_divergence(p, q)[0] != pytest.approx(reversed_form, rel=1e-3)


def test_zrf_of_the_random_model_itself_is_one() -> None:
    z = np.random.default_rng(1).normal(size=(20, 10))
    zrf, js = zrf_score(z, z)
    assert zrf == 1.0 and js == 0.0


def test_zrf_of_confident_models() -> None:
    k = 10
    confident = np.full((4, k), -100.0)
    confident[:, 0] = 100.0  # one-hot on class 0 (the other probabilities are ~e^-200)
    # A random model confident in another class: disjoint supports, JS = ln 2, ZRF = 1 − ln 2,
    # the minimum in nats (it is 0 only if JS were measured in bits).
    other = np.roll(confident, 1, axis=1)
    zrf, js = zrf_score(confident, other)
    assert js == pytest.approx(LN2, abs=1e-12)
    assert zrf == pytest.approx(1.0 - LN2, abs=1e-12)
    # Against a uniform random model, by hand: m = (e0 + u)/2,
    # KL(p‖m) = ln(2k/(k+1)), KL(u‖m) = (1/k)·ln(2/(k+1)) + ((k−1)/k)·ln 2.
    expected_js = 0.5 * (math.log(2 * k / (k + 1)) + math.log(2 / (k + 1)) / k + (k - 1) / k * LN2)
    zrf_u, js_u = zrf_score(confident, np.zeros((4, k)))
    assert js_u == pytest.approx(expected_js, abs=1e-12)
    assert zrf_u == pytest.approx(1.0 - expected_js, abs=1e-12)


def test_mia_on_a_perfectly_separable_case() -> None:
    members = np.linspace(0.95, 1.0, 50)  # training samples: confident
    nonmembers = np.linspace(0.0, 0.3, 50)  # test samples: not
    assert mia_efficacy(members, nonmembers, np.linspace(0.0, 0.2, 30)) == 1.0
    assert mia_efficacy(members, nonmembers, np.linspace(0.97, 1.0, 30)) == 0.0
    half = np.concatenate([np.full(10, 0.05), np.full(10, 0.99)])
    assert mia_efficacy(members, nonmembers, half) == 0.5


def test_mia_needs_all_three_groups() -> None:
    with pytest.raises(MetricsError, match="at least one"):
        mia_efficacy(np.ones(3), np.zeros(3), np.array([]))


def test_probe_auc_separable_and_identical_features() -> None:
    rng = np.random.default_rng(0)
    positives = np.arange(100) % 5 == 0
    train_idx, test_idx = probe_split(positives, seed=0)
    assert set(train_idx) | set(test_idx) == set(range(100))
    assert not set(train_idx) & set(test_idx)
    separable = rng.normal(size=(100, 8))
    separable[positives, 0] += 10.0
    assert probe_auc(separable, positives, train_idx, test_idx) == 1.0
    identical = np.ones((100, 8))  # every sample looks the same: the probe cannot rank
    assert probe_auc(identical, positives, train_idx, test_idx) == 0.5
    again = probe_split(positives, seed=0)
    assert (again[0] == train_idx).all() and (again[1] == test_idx).all()


def test_probe_split_needs_both_groups() -> None:
    with pytest.raises(MetricsError, match="at least 10"):
        probe_split(np.arange(40) < 9, seed=0)


def test_max_abs_diff() -> None:
    a = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    b = np.array([[1.0, 2.5], [2.0, 4.0]])
    assert max_abs_diff(a, b) == 1.0
    with pytest.raises(MetricsError, match="shapes differ"):
        max_abs_diff(a, b[:1])


def _documented_digest(x: np.ndarray, y: np.ndarray, k: int) -> str:
    """docs/metrics.md's recipe, written independently of the implementation."""
    h = hashlib.sha256(b"lethe.imageset.v1\n")
    for name, arr in (("images", x), ("labels", y)):
        header = json.dumps(
            {"dtype": arr.dtype.newbyteorder("<").str, "name": name, "shape": list(arr.shape)},
            separators=(",", ":"),
        ).encode()
        h.update(len(header).to_bytes(8, "big") + header)
        h.update(arr.astype(arr.dtype.newbyteorder("<")).tobytes(order="C"))
    h.update(b'{"num_classes":' + str(k).encode() + b"}")
    return h.hexdigest()


def test_dataset_digest_follows_the_documented_recipe() -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    y = np.array([0, 1], dtype=np.int64)
    s = ImageSet(x, y, 3)
    assert s.digest == dataset_digest(x, y, 3) == _documented_digest(x, y, 3)
    # Big-endian input hashes like its little-endian equal.
    assert dataset_digest(x.astype(">f4"), y.astype(">i8"), 3) == s.digest
    # Any change to values, shape, dtype or class count changes the digest.
    x2 = x.copy()
    x2[1, 2, 1, 1] += 1
    assert dataset_digest(x2, y, 3) != s.digest
    assert dataset_digest(x.reshape(2, 3, 4, 1), y, 3) != s.digest
    assert dataset_digest(x, y.astype(np.int32), 3) != s.digest
    assert dataset_digest(x, y, 4) != s.digest


def test_image_set_copies_and_freezes_its_arrays() -> None:
    x = np.zeros((2, 1, 2, 2), dtype=np.float32)
    s = ImageSet(x, np.array([0, 1]), 2)
    x[0] = 5.0  # the caller's array changes; the set (and its digest) does not
    assert (s.images == 0).all()
    assert s.labels.dtype == np.int64
    with pytest.raises(ValueError):
        s.images[0] = 1.0


@pytest.mark.parametrize(
    ("images", "labels", "k", "match"),
    [
        (np.zeros((0, 1, 2, 2), np.float32), np.zeros(0, np.int64), 10, "empty"),
        (np.zeros((2, 1, 2, 2), np.float32), np.array([0, 10]), 10, r"\[0, 10\)"),
        (np.zeros((2, 1, 2, 2), np.float32), np.array([-1, 0]), 10, r"\[0, 10\)"),
        (np.zeros((2, 1, 2, 2), np.float64), np.array([0, 1]), 10, "float32"),
        (np.full((2, 1, 2, 2), np.nan, np.float32), np.array([0, 1]), 10, "NaN"),
        (np.zeros((3, 1, 2, 2), np.float32), np.array([0, 1]), 10, "one label per image"),
        (np.zeros((2, 1, 2, 2), np.float32), np.array([0.0, 1.0]), 10, "integers"),
        (np.zeros((2, 1, 2, 2), np.float32), np.array([0, 1]), 1, "num_classes"),
    ],
)
def test_image_set_rejects_bad_input(
    images: np.ndarray, labels: np.ndarray, k: int, match: str
) -> None:
    with pytest.raises(EvaluationSetError, match=match):
        ImageSet(images, labels, k)
