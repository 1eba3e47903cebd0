"""The single entry point that measures every metric a backend supports."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from lethe_audit.errors import (
    BackendError,
    EvaluationSetError,
    ForgetClassError,
    MetricsError,
)
from lethe_audit.metrics import _core
from lethe_audit.metrics._backend import Backend, RandomInitBackend, RelearnBackend
from lethe_audit.metrics._dataset import ImageSet, dataset_digest
from lethe_audit.metrics._result import (
    RESULT_FORMAT,
    AccuracyMetric,
    MetricsResult,
    MiaMetric,
    ParityMetric,
    ProbeMetric,
    RelearnConfig,
    RelearnMetric,
    RelearnRun,
    ZrfMetric,
)

__all__ = ["MIA_MAX_PER_SIDE", "evaluate"]

MIA_MAX_PER_SIDE = 5000
"""The MIA attack is fit on at most this many members and as many non-members (SVC is O(n²))."""

# Independent random streams per metric: adding or dropping one metric never changes another's
# numbers. The stream of metric ``tag`` is ``numpy.random.default_rng([seed, tag])``.
_STREAM_MIA = 1
_STREAM_RELEARN = 2


def _check_forget(forget: Iterable[int], num_classes: int) -> tuple[int, ...]:
    classes = list(forget)
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, int | np.integer):
            raise ForgetClassError(f"forgotten classes must be integer class ids, got {c!r}")
    if not classes:
        raise ForgetClassError("name at least one forgotten class")
    out = tuple(sorted({int(c) for c in classes}))
    bad = [c for c in out if not 0 <= c < num_classes]
    if bad:
        raise ForgetClassError(
            f"forgotten classes {bad} are outside [0, {num_classes}) for this evaluation set"
        )
    if len(out) == num_classes:
        raise ForgetClassError(
            "every class is forgotten: nothing is left to retain, so retain accuracy (and the "
            "policy) cannot be measured"
        )
    return out


def _logits(
    backend: Backend, images: npt.NDArray[np.float32], k: int, *, progress: bool
) -> npt.NDArray[np.float64]:
    z = np.asarray(backend.logits(images, progress=progress), dtype=np.float64)
    if z.shape != (images.shape[0], k):
        raise BackendError(
            f"the {backend.kind} model returned logits of shape {z.shape} for {images.shape[0]} "
            f"images, expected ({images.shape[0]}, {k}): does its head have {k} outputs?"
        )
    if not np.isfinite(z).all():
        raise BackendError(f"the {backend.kind} model returned NaN or infinite logits")
    return z


def _features(
    backend: Backend, images: npt.NDArray[np.float32], *, progress: bool
) -> npt.NDArray[np.float64]:
    fn = getattr(backend, "features", None)
    if fn is None:
        raise BackendError(f"the {backend.kind} backend provides no penultimate features")
    f = np.asarray(fn(images, progress=progress), dtype=np.float64)
    if f.ndim != 2 or f.shape[0] != images.shape[0]:
        raise BackendError(f"the {backend.kind} backend returned features of shape {f.shape}")
    if not np.isfinite(f).all():
        raise BackendError(f"the {backend.kind} backend returned NaN or infinite features")
    return f


def _subsample(
    rng: np.random.Generator, idx: npt.NDArray[np.int64], n: int
) -> npt.NDArray[np.int64]:
    if idx.shape[0] <= n:
        return idx
    return np.sort(rng.choice(idx, size=n, replace=False)).astype(np.int64)


def evaluate(
    model: Backend,
    eval_set: ImageSet,
    *,
    forget: Iterable[int],
    base: Backend | None = None,
    train_set: ImageSet | None = None,
    random_model: Backend | None = None,
    parity_reference: Backend | None = None,
    retrained: Backend | None = None,
    relearn: RelearnConfig | None = None,
    allow_unevaluated_classes: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> MetricsResult:
    """Measure the verification metrics of ``model`` after forgetting ``forget``.

    ``eval_set`` is the held-out (test) split; ``train_set`` the training split, needed for MIA
    and relearn time. ``base`` is the unfiltered model (accuracy deltas, probe and MIA beside
    it). ``random_model`` is the ZRF reference; by default the backend builds one from ``seed``.
    ``parity_reference`` is compared logit by logit (ONNX parity). ``relearn`` turns relearn time
    on (trainable backends only), measured also on ``base`` and ``retrained`` when given.

    A forgotten class without evaluation samples is an error unless
    ``allow_unevaluated_classes`` is true, in which case it is recorded as a warning. Metrics that
    cannot be computed with what was given are ``None`` with a reason in ``result.skipped``.
    """
    if not isinstance(eval_set, ImageSet):
        raise EvaluationSetError("eval_set must be a lethe_audit.metrics.ImageSet")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise MetricsError(f"seed must be a non-negative integer, got {seed!r}")
    k = eval_set.num_classes
    forget_t = _check_forget(forget, k)
    forget_set = frozenset(forget_t)
    if train_set is not None:
        if not isinstance(train_set, ImageSet):
            raise EvaluationSetError("train_set must be a lethe_audit.metrics.ImageSet")
        if train_set.num_classes != k or train_set.sample_shape != eval_set.sample_shape:
            raise EvaluationSetError(
                f"train_set ({train_set.num_classes} classes, images {train_set.sample_shape}) "
                f"does not match eval_set ({k} classes, images {eval_set.sample_shape})"
            )

    warnings: list[str] = []
    skipped: dict[str, str] = {}
    counts = eval_set.class_counts()
    unevaluated = tuple(c for c in forget_t if counts[c] == 0)
    if len(unevaluated) == len(forget_t):
        raise ForgetClassError(
            f"the evaluation set has no samples of the forgotten classes {list(forget_t)}: "
            "forget accuracy cannot be measured; evaluate on a split that contains them"
        )
    if unevaluated:
        msg = (
            f"forgotten classes {list(unevaluated)} have no evaluation samples, so nothing shows "
            "they are forgotten"
        )
        if not allow_unevaluated_classes:
            raise ForgetClassError(
                msg + "; add samples of them to the evaluation set, or pass "
                "allow_unevaluated_classes=True to record this as a warning"
            )
        warnings.append(msg)
    is_forget = eval_set.mask(forget_t)
    if not (~is_forget).any():
        raise EvaluationSetError(
            "the evaluation set only holds forgotten classes: retain accuracy needs samples of "
            "the other classes"
        )
    empty_retained = [c for c in range(k) if counts[c] == 0 and c not in forget_set]
    if empty_retained:
        warnings.append(
            f"retained classes {empty_retained} have no evaluation samples (per-class accuracy "
            "null)"
        )

    images, labels = eval_set.images, eval_set.labels
    z = _logits(model, images, k, progress=progress)
    z_base = _logits(base, images, k, progress=progress) if base is not None else None

    # --- accuracy -------------------------------------------------------------------------------
    acc = _core.class_accuracy(z, labels, k, forget_set)
    assert acc.forget is not None and acc.retain is not None
    b = _core.class_accuracy(z_base, labels, k, forget_set) if z_base is not None else None
    accuracy = AccuracyMetric(
        forget_accuracy=acc.forget,
        retain_accuracy=acc.retain,
        per_class=acc.per_class,
        class_counts=acc.counts,
        forget_samples=int(is_forget.sum()),
        retain_samples=int((~is_forget).sum()),
        unevaluated_forget_classes=unevaluated,
        base_forget_accuracy=None if b is None else b.forget,
        base_retain_accuracy=None if b is None else b.retain,
        base_per_class=None if b is None else b.per_class,
        forget_delta=None if b is None or b.forget is None else acc.forget - b.forget,
        retain_delta=None if b is None or b.retain is None else acc.retain - b.retain,
        per_class_delta=None
        if b is None
        else tuple(
            None if m is None or r is None else m - r
            for m, r in zip(acc.per_class, b.per_class, strict=True)
        ),
        dataset_digest=eval_set.digest,
    )

    # --- ZRF --------------------------------------------------------------------------------
    zrf: ZrfMetric | None = None
    try:
        if random_model is not None:
            rand, rand_desc = random_model, f"given by the caller ({random_model.kind} backend)"
        elif isinstance(model, RandomInitBackend):
            rand, rand_desc = model.random_init(seed=seed)
        else:
            raise BackendError(
                f"the {model.kind} backend cannot build a random model; pass random_model="
            )
        z_rand = _logits(rand, images[is_forget], k, progress=progress)
        score, mean_js = _core.zrf_score(z[is_forget], z_rand)
        zrf = ZrfMetric(
            zrf=score,
            mean_js_nats=mean_js,
            samples=int(is_forget.sum()),
            random_model=rand_desc,
            dataset_digest=eval_set.digest,
            seed=seed,
        )
    except BackendError as exc:
        skipped["zrf"] = str(exc)

    # --- MIA --------------------------------------------------------------------------------
    mia: MiaMetric | None = None
    if train_set is None:
        skipped["mia"] = "no train_set given (members and targets are training samples)"
    else:
        train_forget = train_set.mask(forget_t)
        members_all = np.flatnonzero(~train_forget).astype(np.int64)
        targets = np.flatnonzero(train_forget).astype(np.int64)
        nonmembers_all = np.flatnonzero(~is_forget).astype(np.int64)
        if targets.size == 0:
            skipped["mia"] = "train_set has no samples of the forgotten classes"
        elif members_all.size == 0:
            skipped["mia"] = "train_set has no samples of the retained classes"
        else:
            rng = np.random.default_rng([seed, _STREAM_MIA])
            n = min(members_all.size, nonmembers_all.size, MIA_MAX_PER_SIDE)
            members = _subsample(rng, members_all, n)
            nonmembers = _subsample(rng, nonmembers_all, n)

            def efficacy(backend: Backend, z_eval: npt.NDArray[np.float64]) -> float:
                t_img = train_set.images
                t_lab = train_set.labels
                conf_mem = _core.true_label_confidence(
                    _logits(backend, t_img[members], k, progress=progress), t_lab[members]
                )
                conf_non = _core.true_label_confidence(z_eval[nonmembers], labels[nonmembers])
                conf_tgt = _core.true_label_confidence(
                    _logits(backend, t_img[targets], k, progress=progress), t_lab[targets]
                )
                return _core.mia_efficacy(conf_mem, conf_non, conf_tgt)

            mia = MiaMetric(
                efficacy=efficacy(model, z),
                base_efficacy=(
                    efficacy(base, z_base) if base is not None and z_base is not None else None
                ),
                members=int(members.size),
                non_members=int(nonmembers.size),
                targets=int(targets.size),
                attack=_core.MIA_ATTACK,
                train_digest=train_set.digest,
                dataset_digest=eval_set.digest,
                seed=seed,
            )

    # --- feature probe ----------------------------------------------------------------------
    probe: ProbeMetric | None = None
    try:
        f = _features(model, images, progress=progress)
        train_idx, test_idx = _core.probe_split(is_forget, seed)

        def optional_auc(backend: Backend | None, role: str) -> float | None:
            if backend is None:
                return None
            try:
                fb = _features(backend, images, progress=progress)
            except BackendError as exc:
                warnings.append(f"feature probe on the {role} model skipped: {exc}")
                return None
            return _core.probe_auc(fb, is_forget, train_idx, test_idx)

        probe = ProbeMetric(
            auc=_core.probe_auc(f, is_forget, train_idx, test_idx),
            base_auc=optional_auc(base, "base"),
            retrained_auc=optional_auc(retrained, "retrained"),
            train_samples=int(train_idx.size),
            test_samples=int(test_idx.size),
            test_positives=int(is_forget[test_idx].sum()),
            feature_dim=int(f.shape[1]),
            probe=_core.PROBE_MODEL,
            dataset_digest=eval_set.digest,
            seed=seed,
        )
    except (BackendError, MetricsError) as exc:
        skipped["probe"] = str(exc)

    # --- relearn time ----------------------------------------------------------------------
    relearn_metric: RelearnMetric | None = None
    if relearn is None:
        skipped["relearn"] = "not requested (pass relearn=RelearnConfig())"
    elif not isinstance(model, RelearnBackend):
        skipped["relearn"] = f"the {model.kind} backend cannot be fine-tuned (use the torch one)"
    elif train_set is None:
        skipped["relearn"] = "no train_set given (relearning fine-tunes on training samples)"
    else:
        rng = np.random.default_rng([seed, _STREAM_RELEARN])
        chosen: list[npt.NDArray[np.int64]] = []
        for c in forget_t:
            idx_c = np.flatnonzero(train_set.labels == c).astype(np.int64)
            if idx_c.size < relearn.per_class:
                warnings.append(
                    f"relearn: class {c} has {idx_c.size} training samples, fewer than "
                    f"per_class={relearn.per_class}"
                )
            if idx_c.size:
                chosen.append(
                    np.sort(
                        rng.choice(idx_c, size=min(idx_c.size, relearn.per_class), replace=False)
                    ).astype(np.int64)
                )
        if not chosen:
            skipped["relearn"] = "train_set has no samples of the forgotten classes"
        else:
            sel = np.concatenate(chosen)
            rx, ry = train_set.images[sel], train_set.labels[sel]
            tx, ty = images[is_forget], labels[is_forget]

            def run(backend: Backend | None) -> RelearnRun | None:
                if backend is None or not isinstance(backend, RelearnBackend):
                    return None
                return backend.relearn(rx, ry, tx, ty, config=relearn, seed=seed, progress=progress)

            model_run = run(model)
            assert model_run is not None
            relearn_metric = RelearnMetric(
                model=model_run,
                base=run(base),
                retrained=run(retrained),
                config=relearn,
                train_samples=int(sel.size),
                train_digest=dataset_digest(rx, ry, k),
                test_samples=int(tx.shape[0]),
                dataset_digest=eval_set.digest,
                seed=seed,
            )

    # --- ONNX parity ------------------------------------------------------------------------
    parity: ParityMetric | None = None
    if parity_reference is None:
        skipped["parity"] = "no parity_reference given"
    else:
        z_ref = _logits(parity_reference, images, k, progress=progress)
        parity = ParityMetric(
            max_abs_logit_diff=_core.max_abs_diff(z, z_ref),
            reference=parity_reference.kind,
            samples=len(eval_set),
            dataset_digest=eval_set.digest,
        )

    return MetricsResult(
        format=RESULT_FORMAT,
        backend=model.kind,
        num_classes=k,
        forget_classes=forget_t,
        seed=seed,
        samples=len(eval_set),
        dataset_digest=eval_set.digest,
        accuracy=accuracy,
        zrf=zrf,
        mia=mia,
        probe=probe,
        relearn=relearn_metric,
        parity=parity,
        skipped=tuple(sorted(skipped.items())),
        warnings=tuple(warnings),
    )
