"""Metric definitions on plain arrays (the spec is DESIGN §4 and docs/metrics.md).

Everything here works in float64 on numpy arrays and knows nothing about models, so the same
numbers come out whichever backend produced the logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lethe_audit.errors import MetricsError

# scikit-learn is imported inside the functions that need it: it takes most of a second, and
# the CLIs import this package to build their options.

__all__ = [
    "ClassAccuracy",
    "class_accuracy",
    "js_divergence",
    "max_abs_diff",
    "mia_efficacy",
    "probe_auc",
    "softmax",
    "true_label_confidence",
    "zrf_score",
]

F64 = npt.NDArray[np.float64]

MIA_ATTACK = "SVC(C=3, gamma='auto', kernel='rbf') on true-label confidence"
PROBE_MODEL = (
    "StandardScaler + LogisticRegression(C=1, class_weight='balanced', max_iter=5000), "
    "AUC on a stratified 30% hold-out"
)
PROBE_TEST_SIZE = 0.3
# With fewer, the 30% hold-out has one or two positives and the AUC is noise.
PROBE_MIN_PER_GROUP = 10


def _as_2d_f64(name: str, a: npt.ArrayLike) -> F64:
    out = np.asarray(a, dtype=np.float64)
    if out.ndim != 2:
        raise MetricsError(f"{name} must be a 2-D array [samples, classes], got shape {out.shape}")
    if not np.isfinite(out).all():
        raise MetricsError(f"{name} contains NaN or infinity: the model output is not usable")
    return out


def softmax(logits: npt.ArrayLike) -> F64:
    """Row-wise softmax in float64 (max-subtracted, so large logits do not overflow)."""
    z = _as_2d_f64("logits", logits)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)


def _rel_entr(p: F64, m: F64) -> F64:
    # p·log(p/m) with 0·log(0/m) = 0; callers guarantee m > 0 wherever p > 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log(p / m), 0.0)


@dataclass(frozen=True)
class ClassAccuracy:
    """Accuracy split by forgotten / retained classes (``None`` where a split has no samples)."""

    forget: float | None
    retain: float | None
    per_class: tuple[float | None, ...]
    counts: tuple[int, ...]


def class_accuracy(
    logits: npt.ArrayLike, labels: npt.ArrayLike, num_classes: int, forget: frozenset[int]
) -> ClassAccuracy:
    """Top-1 accuracy (ties go to the lowest class id, as ``numpy.argmax``)."""
    z = _as_2d_f64("logits", logits)
    y = np.asarray(labels, dtype=np.int64)
    if z.shape != (y.shape[0], num_classes):
        raise MetricsError(
            f"logits have shape {z.shape}, expected ({y.shape[0]}, {num_classes}): "
            "the model's number of outputs must equal the number of classes"
        )
    correct = np.argmax(z, axis=1) == y
    in_forget = np.isin(y, np.fromiter(sorted(forget), dtype=np.int64))

    def mean(mask: npt.NDArray[np.bool_]) -> float | None:
        n = int(mask.sum())
        return float(correct[mask].sum()) / n if n else None

    counts = tuple(int(c) for c in np.bincount(y, minlength=num_classes))
    return ClassAccuracy(
        forget=mean(in_forget),
        retain=mean(~in_forget),
        per_class=tuple(mean(y == c) for c in range(num_classes)),
        counts=counts,
    )


def js_divergence(p: npt.ArrayLike, q: npt.ArrayLike) -> F64:
    """Jensen-Shannon divergence in nats between rows of ``p`` and ``q``.

    JS(p, q) = ½·KL(p‖m) + ½·KL(q‖m), m = ½(p + q). Zero probabilities are allowed: a term
    with p_i = 0 contributes 0 (0·log 0 = 0), and m_i ≥ p_i/2 > 0 wherever p_i > 0, so the
    result is finite and lies in [0, ln 2].
    """
    pa = _as_2d_f64("p", p)
    qa = _as_2d_f64("q", q)
    if pa.shape != qa.shape:
        raise MetricsError(f"p and q must have the same shape, got {pa.shape} and {qa.shape}")
    if (pa < 0).any() or (qa < 0).any():
        raise MetricsError("probabilities must be non-negative")
    m = 0.5 * (pa + qa)
    js = 0.5 * _rel_entr(pa, m).sum(axis=1) + 0.5 * _rel_entr(qa, m).sum(axis=1)
    # Rounding can leave -1e-17 or ln2 + 1e-16; the bounds are exact mathematically.
    return np.asarray(np.clip(js, 0.0, np.log(2.0)), dtype=np.float64)


def zrf_score(model_logits: npt.ArrayLike, random_logits: npt.ArrayLike) -> tuple[float, float]:
    """ZRF = 1 − mean JS(p_model, p_random) over the given samples; returns (zrf, mean JS)."""
    js = js_divergence(softmax(model_logits), softmax(random_logits))
    if js.shape[0] == 0:
        raise MetricsError("ZRF needs at least one forget sample")
    mean_js = float(js.mean())
    return 1.0 - mean_js, mean_js


def true_label_confidence(logits: npt.ArrayLike, labels: npt.ArrayLike) -> F64:
    """Softmax probability of each sample's true label (the MIA attack feature)."""
    probs = softmax(logits)
    y = np.asarray(labels, dtype=np.int64)
    return np.asarray(probs[np.arange(y.shape[0]), y], dtype=np.float64)


def mia_efficacy(
    member_conf: npt.ArrayLike, nonmember_conf: npt.ArrayLike, target_conf: npt.ArrayLike
) -> float:
    """SalUn-style MIA efficacy: share of targets an SVC calls non-members.

    The SVC (RBF, C=3, gamma='auto') is fit on the members' confidences (label 1) and the
    non-members' (label 0); the caller balances the two groups.
    """
    from sklearn.svm import SVC

    mem = np.asarray(member_conf, dtype=np.float64).reshape(-1, 1)
    non = np.asarray(nonmember_conf, dtype=np.float64).reshape(-1, 1)
    tgt = np.asarray(target_conf, dtype=np.float64).reshape(-1, 1)
    if mem.shape[0] == 0 or non.shape[0] == 0 or tgt.shape[0] == 0:
        raise MetricsError("MIA needs at least one member, one non-member and one target sample")
    x = np.concatenate([mem, non])
    y = np.concatenate([np.ones(mem.shape[0]), np.zeros(non.shape[0])])
    clf = SVC(C=3.0, gamma="auto", kernel="rbf")
    clf.fit(x, y)
    return float(1.0 - clf.predict(tgt).mean())


def probe_split(
    positives: npt.NDArray[np.bool_], seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Stratified, seeded train / hold-out split of sample indices for the feature probe."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(positives.shape[0])
    n_pos = int(positives.sum())
    n_neg = positives.shape[0] - n_pos
    if min(n_pos, n_neg) < PROBE_MIN_PER_GROUP:
        raise MetricsError(
            f"the feature probe needs at least {PROBE_MIN_PER_GROUP} evaluation samples of the "
            f"forgotten classes and as many of the rest, got {n_pos} and {n_neg}"
        )
    train_idx, test_idx = train_test_split(
        idx, test_size=PROBE_TEST_SIZE, stratify=positives, random_state=seed
    )
    return np.sort(train_idx).astype(np.int64), np.sort(test_idx).astype(np.int64)


def probe_auc(
    features: npt.ArrayLike,
    positives: npt.NDArray[np.bool_],
    train_idx: npt.NDArray[np.int64],
    test_idx: npt.NDArray[np.int64],
) -> float:
    """Hold-out ROC AUC of a logistic-regression probe separating ``positives`` from the rest."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    f = _as_2d_f64("features", features)
    if f.shape[0] != positives.shape[0]:
        raise MetricsError(f"{f.shape[0]} feature rows for {positives.shape[0]} samples")
    probe = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000),
    )
    probe.fit(f[train_idx], positives[train_idx])
    scores = probe.decision_function(f[test_idx])
    return float(roc_auc_score(positives[test_idx], scores))


def max_abs_diff(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """max |a − b| in float64 (ONNX parity on logits)."""
    x = _as_2d_f64("logits", a)
    y = _as_2d_f64("reference logits", b)
    if x.shape != y.shape:
        raise MetricsError(f"logit shapes differ: {x.shape} vs {y.shape}")
    return float(np.max(np.abs(x - y))) if x.size else 0.0
