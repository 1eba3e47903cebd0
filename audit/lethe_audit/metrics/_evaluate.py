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
    median_run,
)

__all__ = ["MIA_MAX_PER_SIDE", "evaluate"]

MIA_MAX_PER_SIDE = 5000
"""The MIA attack is fit on at most this many members and as many non-members (SVC is O(n²))."""

# Independent random streams per metric: adding or dropping one metric never changes another's
# numbers. The stream of metric ``tag`` is ``numpy.random.default_rng([seed, tag])``.
_STREAM_MIA = 1
_STREAM_RELEARN = 2

F64 = npt.NDArray[np.float64]


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
    if train_set is not None:
        if not isinstance(train_set, ImageSet):
            raise EvaluationSetError("train_set must be a lethe_audit.metrics.ImageSet")
        if train_set.num_classes != k or train_set.sample_shape != eval_set.sample_shape:
            raise EvaluationSetError(
                f"train_set ({train_set.num_classes} classes, images {train_set.sample_shape}) "
                f"does not match eval_set ({k} classes, images {eval_set.sample_shape})"
            )
    run = _Evaluation(eval_set, forget_t, seed=seed, progress=progress)
    unevaluated = run.check_coverage(allow_unevaluated_classes=allow_unevaluated_classes)
    z = run.logits(model, eval_set.images)
    z_base = run.logits(base, eval_set.images) if base is not None else None
    return MetricsResult(
        format=RESULT_FORMAT,
        backend=model.kind,
        num_classes=k,
        forget_classes=forget_t,
        seed=seed,
        samples=len(eval_set),
        dataset_digest=eval_set.digest,
        accuracy=run.accuracy(z, z_base, unevaluated),
        zrf=run.zrf(model, z, random_model),
        mia=run.mia(model, z, base, z_base, train_set),
        probe=run.probe(model, base, retrained),
        relearn=run.relearn(model, base, retrained, train_set, relearn),
        parity=run.parity(z, parity_reference),
        skipped=tuple(sorted(run.skipped.items())),
        warnings=tuple(run.warnings),
    )


class _Evaluation:
    """State shared by the metrics of one :func:`evaluate` call (warnings, skip reasons)."""

    def __init__(
        self, data: ImageSet, forget: tuple[int, ...], *, seed: int, progress: bool
    ) -> None:
        self.data = data
        self.forget = forget
        self.k = data.num_classes
        self.is_forget = data.mask(forget)
        self.seed = seed
        self.progress = progress
        self.warnings: list[str] = []
        self.skipped: dict[str, str] = {}

    def logits(self, backend: Backend, images: npt.NDArray[np.float32]) -> F64:
        return _logits(backend, images, self.k, progress=self.progress)

    def check_coverage(self, *, allow_unevaluated_classes: bool) -> tuple[int, ...]:
        counts = self.data.class_counts()
        unevaluated = tuple(c for c in self.forget if counts[c] == 0)
        if len(unevaluated) == len(self.forget):
            raise ForgetClassError(
                f"the evaluation set has no samples of the forgotten classes {list(self.forget)}"
                ": forget accuracy cannot be measured; evaluate on a split that contains them"
            )
        if unevaluated:
            msg = (
                f"forgotten classes {list(unevaluated)} have no evaluation samples, so nothing "
                "shows they are forgotten"
            )
            if not allow_unevaluated_classes:
                raise ForgetClassError(
                    msg + "; add samples of them to the evaluation set, or pass "
                    "allow_unevaluated_classes=True to record this as a warning"
                )
            self.warnings.append(msg)
        if self.is_forget.all():
            raise EvaluationSetError(
                "the evaluation set only holds forgotten classes: retain accuracy needs samples "
                "of the other classes"
            )
        empty = [c for c in range(self.k) if counts[c] == 0 and c not in self.forget]
        if empty:
            self.warnings.append(
                f"retained classes {empty} have no evaluation samples (per-class accuracy null)"
            )
        return unevaluated

    def accuracy(self, z: F64, z_base: F64 | None, unevaluated: tuple[int, ...]) -> AccuracyMetric:
        forget = frozenset(self.forget)
        acc = _core.class_accuracy(z, self.data.labels, self.k, forget)
        b = (
            None
            if z_base is None
            else _core.class_accuracy(z_base, self.data.labels, self.k, forget)
        )
        # check_coverage guarantees samples on both sides, so neither accuracy is None.
        if (
            acc.forget is None
            or acc.retain is None
            or (b is not None and (b.forget is None or b.retain is None))
        ):
            raise EvaluationSetError(
                "the evaluation set needs samples of both the forgotten and the retained "
                "classes (check_coverage was not run)"
            )
        return AccuracyMetric(
            forget_accuracy=acc.forget,
            retain_accuracy=acc.retain,
            per_class=acc.per_class,
            class_counts=acc.counts,
            forget_samples=int(self.is_forget.sum()),
            retain_samples=int((~self.is_forget).sum()),
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
            dataset_digest=self.data.digest,
        )

    def zrf(self, model: Backend, z: F64, random_model: Backend | None) -> ZrfMetric | None:
        if random_model is not None:
            rand, how = random_model, f"given by the caller ({random_model.kind} backend)"
        elif isinstance(model, RandomInitBackend):
            try:
                rand, how = model.random_init(seed=self.seed)
            except BackendError as exc:
                self.skipped["zrf"] = str(exc)
                return None
        else:
            self.skipped["zrf"] = (
                f"the {model.kind} backend cannot build a random model (the reference ZRF "
                "compares with)"
            )
            return None
        z_rand = self.logits(rand, self.data.images[self.is_forget])
        score, mean_js = _core.zrf_score(z[self.is_forget], z_rand)
        return ZrfMetric(
            zrf=score,
            mean_js_nats=mean_js,
            samples=int(self.is_forget.sum()),
            random_model=how,
            dataset_digest=self.data.digest,
            seed=self.seed,
        )

    def mia(
        self,
        model: Backend,
        z: F64,
        base: Backend | None,
        z_base: F64 | None,
        train: ImageSet | None,
    ) -> MiaMetric | None:
        if train is None:
            self.skipped["mia"] = (
                "no training data given (the attack compares training with test samples)"
            )
            return None
        train_forget = train.mask(self.forget)
        members_all = np.flatnonzero(~train_forget).astype(np.int64)
        targets = np.flatnonzero(train_forget).astype(np.int64)
        if targets.size == 0:
            self.skipped["mia"] = "the training data has no samples of the forgotten classes"
            return None
        if members_all.size == 0:
            self.skipped["mia"] = "the training data has no samples of the retained classes"
            return None
        nonmembers_all = np.flatnonzero(~self.is_forget).astype(np.int64)
        rng = np.random.default_rng([self.seed, _STREAM_MIA])
        n = min(members_all.size, nonmembers_all.size, MIA_MAX_PER_SIDE)
        members = _subsample(rng, members_all, n)
        nonmembers = _subsample(rng, nonmembers_all, n)

        def efficacy(backend: Backend, z_eval: F64) -> float:
            conf = _core.true_label_confidence
            mem = conf(self.logits(backend, train.images[members]), train.labels[members])
            non = conf(z_eval[nonmembers], self.data.labels[nonmembers])
            tgt = conf(self.logits(backend, train.images[targets]), train.labels[targets])
            return _core.mia_efficacy(mem, non, tgt)

        return MiaMetric(
            efficacy=efficacy(model, z),
            base_efficacy=None if base is None or z_base is None else efficacy(base, z_base),
            members=int(members.size),
            non_members=int(nonmembers.size),
            targets=int(targets.size),
            attack=_core.MIA_ATTACK,
            train_digest=train.digest,
            dataset_digest=self.data.digest,
            seed=self.seed,
        )

    def probe(
        self, model: Backend, base: Backend | None, retrained: Backend | None
    ) -> ProbeMetric | None:
        images = self.data.images
        try:
            f = _features(model, images, progress=self.progress)
            train_idx, test_idx = _core.probe_split(self.is_forget, self.seed)
        except MetricsError as exc:  # no features, or too few samples for a hold-out
            self.skipped["probe"] = str(exc)
            return None

        def auc(features: F64) -> float:
            return _core.probe_auc(features, self.is_forget, train_idx, test_idx)

        def beside(backend: Backend | None, role: str) -> float | None:
            if backend is None:
                return None
            try:
                return auc(_features(backend, images, progress=self.progress))
            except BackendError as exc:
                self.warnings.append(f"feature probe on the {role} model skipped: {exc}")
                return None

        return ProbeMetric(
            auc=auc(f),
            base_auc=beside(base, "base"),
            retrained_auc=beside(retrained, "retrained"),
            train_samples=int(train_idx.size),
            test_samples=int(test_idx.size),
            test_positives=int(self.is_forget[test_idx].sum()),
            feature_dim=int(f.shape[1]),
            probe=_core.PROBE_MODEL,
            dataset_digest=self.data.digest,
            seed=self.seed,
        )

    def relearn(
        self,
        model: Backend,
        base: Backend | None,
        retrained: Backend | None,
        train: ImageSet | None,
        config: RelearnConfig | None,
    ) -> RelearnMetric | None:
        if config is None:
            self.skipped["relearn"] = "not requested for this measurement"
            return None
        if not isinstance(model, RelearnBackend):
            self.skipped["relearn"] = (
                f"the {model.kind} backend cannot be fine-tuned (relearn time needs the "
                "trainable PyTorch model)"
            )
            return None
        if train is None:
            self.skipped["relearn"] = "no training data given (relearning fine-tunes on it)"
            return None
        picks = [self._relearn_pick(train, config, self.seed + i) for i in range(config.seeds)]
        if any(p.size == 0 for p in picks):
            self.skipped["relearn"] = "the training data has no samples of the forgotten classes"
            return None
        tx, ty = self.data.images[self.is_forget], self.data.labels[self.is_forget]

        def runs(backend: RelearnBackend) -> tuple[RelearnRun, ...]:
            return tuple(
                backend.relearn(
                    train.images[sel],
                    train.labels[sel],
                    tx,
                    ty,
                    config=config,
                    seed=self.seed + i,
                    progress=self.progress,
                )
                for i, sel in enumerate(picks)
            )

        def beside(backend: Backend | None, role: str) -> RelearnRun | None:
            if backend is None:
                return None
            if not isinstance(backend, RelearnBackend):
                self.warnings.append(
                    f"relearn on the {role} model skipped: the {backend.kind} backend cannot "
                    "be fine-tuned"
                )
                return None
            return median_run(runs(backend))

        model_runs = runs(model)
        every = np.concatenate(picks)
        return RelearnMetric(
            model=median_run(model_runs),
            base=beside(base, "base"),
            retrained=beside(retrained, "retrained"),
            config=config,
            train_samples=int(picks[0].size),
            train_digest=dataset_digest(train.images[every], train.labels[every], self.k),
            test_samples=int(tx.shape[0]),
            dataset_digest=self.data.digest,
            seed=self.seed,
            model_runs=model_runs,
        )

    def _relearn_pick(
        self, train: ImageSet, config: RelearnConfig, seed: int
    ) -> npt.NDArray[np.int64]:
        """The ``per_class`` training samples of each forgotten class one run fine-tunes on."""
        rng = np.random.default_rng([seed, _STREAM_RELEARN])
        chosen: list[npt.NDArray[np.int64]] = []
        for c in self.forget:
            idx = np.flatnonzero(train.labels == c).astype(np.int64)
            if idx.size < config.per_class and seed == self.seed:
                self.warnings.append(
                    f"relearn: class {c} has {idx.size} training samples, fewer than "
                    f"per_class={config.per_class}"
                )
            if idx.size:
                pick = rng.choice(idx, size=min(idx.size, config.per_class), replace=False)
                chosen.append(np.sort(pick).astype(np.int64))
        return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)

    def parity(self, z: F64, reference: Backend | None) -> ParityMetric | None:
        if reference is None:
            self.skipped["parity"] = (
                "no second copy of the model (such as the exported ONNX file) was compared"
            )
            return None
        return ParityMetric(
            max_abs_logit_diff=_core.max_abs_diff(z, self.logits(reference, self.data.images)),
            reference=reference.kind,
            samples=len(self.data),
            dataset_digest=self.data.digest,
        )
