"""The torch backend: any ``nn.Module`` classifier (timm model or plain CNN)."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm.auto import tqdm

from lethe_audit.errors import BackendError, ModelInputError
from lethe_audit.metrics import RelearnConfig, RelearnRun

__all__ = ["RANDOM_TORCH_SCHEME", "TorchBackend", "randomized_copy"]

RANDOM_TORCH_SCHEME = "torch-reset-parameters-v1"

#: With ``progress``, one INFO line per inference pass and per relearn step (the bars' numbers),
#: which ``lethe`` commands print when stderr is not a terminal.
_log = logging.getLogger("lethe.metrics")


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _tensor(array: npt.NDArray[Any]) -> torch.Tensor:
    # ImageSet arrays are read-only; torch.from_numpy would share (and warn about) them.
    if array.flags.writeable and array.flags.c_contiguous:
        return torch.from_numpy(array)
    return torch.from_numpy(np.array(array, order="C", copy=True))


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    # Inference must not change BatchNorm statistics or use dropout, and must leave the caller's
    # module exactly as it was: record every submodule's flag and restore it.
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.train(flag)


def randomized_copy(model: nn.Module, *, seed: int) -> tuple[nn.Module, str]:
    """A copy of ``model`` re-initialised from ``seed``; returns (copy, description).

    Scheme ``torch-reset-parameters-v1``: on a CPU copy, every submodule that has a
    ``reset_parameters()`` method (``Conv*d``, ``Linear``, norms, embeddings, ...) calls it, in
    ``model.modules()`` order, with torch's CPU generator seeded with ``seed`` (the caller's
    global RNG state is restored afterwards). Conv/linear weights and biases thus follow
    torch's default U(−1/√fan_in, 1/√fan_in), norms become identity; other parameters (e.g.
    position embeddings, class tokens) are kept, as in the ONNX scheme. The copy is moved to the
    original's device.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise BackendError(f"seed must be a non-negative integer, got {seed!r}")
    device = _model_device(model)
    clone = copy.deepcopy(model).to("cpu")
    count = 0
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.default_generator.manual_seed(seed)
        for module in clone.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
                count += 1
    if count == 0:
        raise BackendError(
            "the model has no modules with reset_parameters(); pass an explicit random_model="
        )
    description = (
        f"{RANDOM_TORCH_SCHEME}: seed {seed}, reset_parameters() of {count} modules on CPU "
        f"(torch {torch.__version__})"
    )
    return clone.to(device), description


class TorchBackend:
    """Wraps a classifier ``nn.Module`` for :func:`lethe_audit.metrics.evaluate`.

    Inference runs under ``torch.no_grad()`` in eval mode (the module's train/eval flags are
    restored afterwards), in batches of ``batch_size``. ``device``: ``None`` uses the module's
    own device, ``"auto"`` CUDA when available, else the given device; when it differs from the
    module's, the backend works on a copy (the caller's module is never moved or changed).

    Penultimate features: timm's ``forward_head(forward_features(x), pre_logits=True)`` when the
    module has both methods; otherwise the input of the classifier head, captured with a
    forward hook. The head is ``head`` (a submodule or its dotted name) if given, else
    ``model.get_classifier()`` if present, else the last ``nn.Linear`` in ``model.modules()``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device | None = None,
        batch_size: int = 256,
        head: nn.Module | str | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise BackendError(f"expected a torch.nn.Module, got {type(model).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise BackendError(f"batch_size must be a positive integer, got {batch_size!r}")
        own = _model_device(model)
        if device is None:
            target = own
        elif device == "auto":
            target = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            try:
                target = torch.device(device)
            except (RuntimeError, TypeError) as exc:
                raise BackendError(f"unknown device {device!r}: {exc}") from exc
        if target.type == "cuda" and not torch.cuda.is_available():
            raise BackendError("CUDA was asked for but is not available; use device='cpu'")
        same = target.type == own.type and (target.index is None or target.index == own.index)
        self._model = model if same else copy.deepcopy(model).to(target)
        self._device = target if not same else own
        self._batch_size = batch_size
        self._head_spec = head

    @property
    def kind(self) -> str:
        return "torch"

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def module(self) -> nn.Module:
        """The wrapped module (a copy when the backend moved it to another device)."""
        return self._model

    def _check(self, images: npt.NDArray[Any]) -> None:
        if not isinstance(images, np.ndarray):
            raise ModelInputError("images must be a numpy array")
        if images.dtype != np.float32:
            raise ModelInputError(
                f"images must be float32, got {images.dtype}: convert with .astype(numpy.float32)"
            )
        if images.ndim < 2 or images.shape[0] == 0:
            raise ModelInputError(f"expected a non-empty batch [N, ...], got {images.shape}")

    def _batches(
        self, images: npt.NDArray[np.float32], desc: str, progress: bool
    ) -> Iterator[torch.Tensor]:
        n = images.shape[0]
        t0 = time.perf_counter()
        with tqdm(
            total=n, disable=None if progress else True, desc=desc, unit="img", leave=False
        ) as bar:
            for start in range(0, n, self._batch_size):
                batch = images[start : start + self._batch_size]
                yield _tensor(batch).to(self._device)
                bar.update(batch.shape[0])
        if progress:
            _log.info("%s: %d images in %.1f s", desc, n, time.perf_counter() - t0)

    def _forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        try:
            out = model(x)
        except RuntimeError as exc:
            raise ModelInputError(
                f"the model rejected a batch of shape {list(x.shape)}: {exc}"
            ) from exc
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            raise BackendError("the model must return a logits tensor of shape [N, classes]")
        return out

    def logits(
        self, images: npt.NDArray[np.float32], *, progress: bool = False
    ) -> npt.NDArray[np.floating]:
        """Logits for every image (float32 numpy, input order)."""
        self._check(images)
        outs: list[npt.NDArray[np.float32]] = []
        with torch.no_grad(), _eval_mode(self._model):
            for x in self._batches(images, "torch logits", progress):
                outs.append(self._forward(self._model, x).float().cpu().numpy())
        return np.concatenate(outs)

    def _head(self) -> nn.Module:
        spec = self._head_spec
        if isinstance(spec, nn.Module):
            return spec
        if isinstance(spec, str):
            try:
                return self._model.get_submodule(spec)
            except AttributeError as exc:
                raise BackendError(f"the model has no submodule {spec!r}") from exc
        get = getattr(self._model, "get_classifier", None)
        if callable(get):
            found = get()
            if isinstance(found, nn.Module) and not isinstance(found, nn.Identity):
                return found
        linears = [m for m in self._model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise BackendError(
                "cannot find the classifier head for penultimate features: pass head= "
                "(the module or its dotted name)"
            )
        return linears[-1]

    def features(
        self, images: npt.NDArray[np.float32], *, progress: bool = False
    ) -> npt.NDArray[np.floating]:
        """Penultimate features ``[N, D]`` (see the class docstring for how they are taken)."""
        self._check(images)
        model = self._model
        timm_like = (
            self._head_spec is None
            and callable(getattr(model, "forward_features", None))
            and callable(getattr(model, "forward_head", None))
        )
        outs: list[npt.NDArray[np.float32]] = []
        with torch.no_grad(), _eval_mode(model):
            if timm_like:
                for x in self._batches(images, "torch features", progress):
                    f = model.forward_head(  # type: ignore[operator]
                        model.forward_features(x),  # type: ignore[operator]
                        pre_logits=True,
                    )
                    outs.append(f.reshape(f.shape[0], -1).float().cpu().numpy())
            else:
                head = self._head()
                captured: list[torch.Tensor] = []

                def hook(_m: nn.Module, args: tuple[Any, ...], _out: Any) -> None:
                    captured.append(args[0])

                handle = head.register_forward_hook(hook)
                try:
                    for x in self._batches(images, "torch features", progress):
                        captured.clear()
                        self._forward(model, x)
                        if len(captured) != 1:
                            raise BackendError(
                                f"the classifier head ran {len(captured)} times in one forward "
                                "pass; pass head= to name the right module"
                            )
                        f = captured[0]
                        outs.append(f.reshape(f.shape[0], -1).float().cpu().numpy())
                finally:
                    handle.remove()
        return np.concatenate(outs)

    def random_init(self, *, seed: int) -> tuple[TorchBackend, str]:
        """A seeded random re-initialisation (:func:`randomized_copy`) of the model, and how."""
        clone, description = randomized_copy(self._model, seed=seed)
        return TorchBackend(clone, batch_size=self._batch_size), description

    def relearn(
        self,
        train_images: npt.NDArray[np.float32],
        train_labels: npt.NDArray[np.int64],
        test_images: npt.NDArray[np.float32],
        test_labels: npt.NDArray[np.int64],
        *,
        config: RelearnConfig,
        seed: int,
        progress: bool = False,
    ) -> RelearnRun:
        """Relearn time on a copy of the model (the wrapped module is not changed).

        All parameters are trained, with the copy in eval mode: a handful of samples of one or
        two classes gives meaningless BatchNorm batch statistics, and updating the running
        statistics with them would wreck the model for reasons unrelated to what it knows.
        Each step is one full-batch optimizer step on all the given samples; accuracy on the
        test samples is measured before the first step and after each one.
        """
        self._check(train_images)
        self._check(test_images)
        model = copy.deepcopy(self._model)
        model.eval()
        params = list(model.parameters())
        for p in params:
            p.requires_grad_(True)
        optimizer: torch.optim.Optimizer
        if config.optimizer == "sgd":
            optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
        else:
            optimizer = torch.optim.Adam(params, lr=config.lr)
        x = _tensor(train_images).to(self._device)
        y = _tensor(train_labels).to(self._device)
        ty = _tensor(test_labels).to(self._device)

        def accuracy() -> float:
            correct = 0
            with torch.no_grad():
                for i, tx in enumerate(self._batches(test_images, "relearn eval", False)):
                    start = i * self._batch_size
                    pred = self._forward(model, tx).argmax(dim=1)
                    correct += int((pred == ty[start : start + tx.shape[0]]).sum())
            return correct / int(test_images.shape[0])

        accs = [accuracy()]
        if accs[0] >= config.threshold:
            return RelearnRun(reached=True, steps=0, accuracies=tuple(accs))
        loss_fn = nn.CrossEntropyLoss()
        with (
            torch.random.fork_rng(devices=[]),
            tqdm(
                total=config.max_steps,
                disable=None if progress else True,
                desc="relearn",
                leave=False,
            ) as bar,
        ):
            torch.default_generator.manual_seed(seed)
            for step in range(1, config.max_steps + 1):
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(self._forward(model, x), y)
                loss.backward()
                optimizer.step()
                accs.append(accuracy())
                bar.update(1)
                if progress:
                    _log.info(
                        "relearn step %d/%d: accuracy %.3f (threshold %.3f)",
                        step, config.max_steps, accs[-1], config.threshold,
                    )  # fmt: skip
                if accs[-1] >= config.threshold:
                    return RelearnRun(reached=True, steps=step, accuracies=tuple(accs))
        return RelearnRun(reached=False, steps=config.max_steps, accuracies=tuple(accs))
