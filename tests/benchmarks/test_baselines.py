"""The benchmark baselines (benchmarks/_baselines.py) on a tiny CNN and a synthetic 4-class task
whose class k is a bright k-th quadrant of an 8x8 image under noise."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from benchmarks._baselines import (
    finetune,
    head_mask,
    neggrad_plus,
    per_class_seconds,
    retrain,
    ssd,
)
from torch import nn
from torch.utils.data import TensorDataset

from lethe.models import accuracy, fit, predict

FORGET = [0]


def tiny_cnn() -> nn.Module:
    # Pooling to 2x2, not 1x1: which quadrant is bright is a spatial property.
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 4),
    )


def quadrants(per_class: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(4).repeat(per_class)
    x = 0.8 * torch.randn(len(y), 1, 8, 8, generator=g)
    for k in range(4):
        r, c = divmod(k, 2)
        x[y == k, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 1.5
    return TensorDataset(x, y)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # Tensors this small gain nothing from intra-op threads, and on a busy 2-core machine the
    # threads' spinning made this file ~10x slower.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def train() -> TensorDataset:
    return quadrants(64, seed=0)


@pytest.fixture(scope="module")
def test_split() -> tuple[TensorDataset, TensorDataset]:
    """(forget-class, retain-class) held-out samples."""
    x, y = quadrants(32, seed=1).tensors
    f = torch.isin(y, torch.tensor(FORGET))
    return TensorDataset(x[f], y[f]), TensorDataset(x[~f], y[~f])


@pytest.fixture(scope="module")
def base(train: TensorDataset, test_split: tuple[TensorDataset, TensorDataset]) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = tiny_cnn()
    fit(model, train, epochs=8, lr=1e-2, batch_size=32, progress=False)
    forget_te, retain_te = test_split
    assert accuracy(model, forget_te) > 0.9 and accuracy(model, retain_te) > 0.9
    return model


def layer(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def conv_w(model: nn.Module) -> torch.Tensor:
    """The first conv's weight, a cheap "did anything train" probe."""
    w = layer(model, "0").weight
    assert isinstance(w, torch.Tensor)
    return w


def linear(model: nn.Module, name: str) -> nn.Linear:
    m = layer(model, name)
    assert isinstance(m, nn.Linear) and m.bias is not None
    return m


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def forget_confidence(model: nn.Module, data: TensorDataset) -> float:
    x, y = data.tensors
    return float(predict(model, x).softmax(1).gather(1, y[:, None]).mean())


Method = Callable[[nn.Module, TensorDataset], nn.Module]

METHODS: dict[str, Method] = {
    "head_mask": lambda m, d: head_mask(m, FORGET),
    "finetune": lambda m, d: finetune(m, d, FORGET, epochs=1, lr=1e-3, batch_size=32),
    "neggrad_plus": lambda m, d: neggrad_plus(m, d, FORGET, epochs=1, lr=1e-2, batch_size=32),
    "ssd": lambda m, d: ssd(m, d, FORGET, batch_size=32),
}


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("train_mode", [False, True])
def test_input_untouched_and_copy_in_eval(
    name: str, train_mode: bool, base: nn.Module, train: TensorDataset
) -> None:
    base.train(train_mode)
    try:
        before = snapshot(base)
        out = METHODS[name](base, train)
        assert out is not base
        assert_same(before, snapshot(base))
        assert all(m.training == train_mode for m in base.modules())
        assert not any(m.training for m in out.modules())
        # The copy really is separate storage: editing it leaves the input alone.
        with torch.no_grad():
            next(out.parameters()).add_(1.0)
        assert_same(before, snapshot(base))
    finally:
        base.eval()


# --------------------------------------------------------------------------------- head_mask


def test_head_mask(base: nn.Module, train: TensorDataset) -> None:
    x = train.tensors[0]
    out = head_mask(base, FORGET)
    feats: dict[str, torch.Tensor] = {}

    def grab(key: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]:
        def hook(_m: nn.Module, inp: tuple[torch.Tensor, ...], _o: torch.Tensor) -> None:
            feats[key] = inp[0].detach()

        return hook

    hooks = [
        layer(base, "5").register_forward_hook(grab("base")),
        layer(out, "5").register_forward_hook(grab("out")),
    ]
    try:
        p_base, p_out = predict(base, x).argmax(1), predict(out, x).argmax(1)
    finally:
        for h in hooks:
            h.remove()
    assert torch.equal(feats["base"], feats["out"])
    assert not torch.isin(p_out, torch.tensor(FORGET)).any()
    kept = ~torch.isin(p_base, torch.tensor(FORGET))
    assert torch.equal(p_out[kept], p_base[kept])
    head = linear(out, "5")
    assert (head.weight[FORGET] == 0).all() and (head.bias[FORGET] == -1e4).all()
    # Only the forgotten rows of the head differ.
    a, b = snapshot(base), snapshot(out)
    rows = torch.ones(4, dtype=torch.bool)
    rows[FORGET] = False
    for k in a:
        if k.startswith("5."):
            assert torch.equal(a[k][rows], b[k][rows]), k
        else:
            assert torch.equal(a[k], b[k]), k


class TwoHeads(nn.Module):
    """get_classifier() names the head, which is not the last nn.Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.aux = nn.Linear(3, 4)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(x)
        return out


def test_head_mask_head_choice_and_errors() -> None:
    torch.manual_seed(0)
    m = TwoHeads()
    out = head_mask(m, [1, 3])
    assert isinstance(out, TwoHeads)
    assert (linear(out, "fc").bias[[1, 3]] == -1e4).all()
    assert torch.equal(linear(out, "aux").bias, m.aux.bias)
    out = head_mask(m, [2], head=m.aux)
    assert linear(out, "aux").bias[2] == -1e4
    assert torch.equal(linear(out, "fc").bias, m.fc.bias)

    with pytest.raises(ValueError, match="no bias"):
        head_mask(nn.Sequential(nn.Flatten(), nn.Linear(3, 4, bias=False)), [0])
    with pytest.raises(ValueError, match="outside"):
        head_mask(m, [4])
    with pytest.raises(ValueError, match="not a sub-module"):
        head_mask(m, [0], head=nn.Linear(3, 4))


# ----------------------------------------------------------------------------------- retrain


def test_retrain_never_learns_the_class_and_is_deterministic(
    train: TensorDataset, test_split: tuple[TensorDataset, TensorDataset]
) -> None:
    forget_te, retain_te = test_split
    runs = []
    with torch.random.fork_rng(devices=[]):
        for global_seed in (123, 456):  # only `seed` may decide the result, not global state
            torch.manual_seed(global_seed)
            rng = torch.random.get_rng_state()
            runs.append(
                retrain(tiny_cnn, train, FORGET, epochs=8, lr=1e-2, batch_size=32, augment_pad=1)
            )
            assert torch.equal(rng, torch.random.get_rng_state())  # caller's RNG untouched
    assert_same(snapshot(runs[0]), snapshot(runs[1]))
    assert accuracy(runs[0], forget_te) < 0.2
    assert accuracy(runs[0], retain_te) > 0.9
    assert not runs[0].training
    other_seed = retrain(tiny_cnn, train, FORGET, epochs=1, lr=1e-2, batch_size=32, seed=1)
    assert not torch.equal(conv_w(other_seed), conv_w(runs[0]))


# ------------------------------------------------------------------------ finetune, NegGrad+


def test_finetune_keeps_retain_accuracy(
    base: nn.Module, train: TensorDataset, test_split: tuple[TensorDataset, TensorDataset]
) -> None:
    out = finetune(base, train, FORGET, epochs=2, lr=1e-3, batch_size=32)
    assert accuracy(out, test_split[1]) > 0.9
    assert not torch.equal(conv_w(out), conv_w(base))


def test_neggrad_plus_forgets(
    base: nn.Module, train: TensorDataset, test_split: tuple[TensorDataset, TensorDataset]
) -> None:
    forget_te, retain_te = test_split
    kw = {"lr": 1e-2, "alpha": 0.5, "batch_size": 32, "forget_ce_cap": 5.0}
    out = neggrad_plus(base, train, FORGET, epochs=6, **kw)  # type: ignore[arg-type]
    again = neggrad_plus(base, train, FORGET, epochs=6, **kw)  # type: ignore[arg-type]
    assert_same(snapshot(out), snapshot(again))
    other = neggrad_plus(base, train, FORGET, epochs=1, seed=1, **kw)  # type: ignore[arg-type]
    first = neggrad_plus(base, train, FORGET, epochs=1, **kw)  # type: ignore[arg-type]
    assert not torch.equal(conv_w(other), conv_w(first))  # the seed drives the shuffling
    assert accuracy(base, forget_te) - accuracy(out, forget_te) > 0.5
    assert accuracy(out, retain_te) > 0.8
    assert all(torch.isfinite(p).all() for p in out.parameters())


@pytest.mark.parametrize(
    ("alpha", "cap"),
    [(1.0, None), (0.5, 0.0)],
    ids=["alpha=1", "cap=0"],
)
def test_neggrad_plus_forget_term_can_drop_out(
    alpha: float, cap: float | None, base: nn.Module, train: TensorDataset
) -> None:
    # alpha=1 weights the forget term by 0; a cap of 0 clamps it to a constant. Either way
    # the forget images must not matter: replacing them by noise gives the same weights.
    x, y = train.tensors
    noisy = x.clone()
    f = torch.isin(y, torch.tensor(FORGET))
    noisy[f] = torch.randn(int(f.sum()), *x.shape[1:], generator=torch.Generator().manual_seed(3))
    a, b = (
        neggrad_plus(
            base, data, FORGET, epochs=1, lr=1e-2, alpha=alpha, batch_size=32, forget_ce_cap=cap
        )
        for data in (train, TensorDataset(noisy, y))
    )
    assert_same(snapshot(a), snapshot(b))
    uncapped = neggrad_plus(base, TensorDataset(noisy, y), FORGET, epochs=1, lr=1e-2, alpha=0.5)
    assert not torch.equal(conv_w(uncapped), conv_w(b))


def test_neggrad_plus_errors(base: nn.Module, train: TensorDataset) -> None:
    with pytest.raises(ValueError, match="alpha"):
        neggrad_plus(base, train, FORGET, epochs=1, lr=1e-2, alpha=1.5)
    with pytest.raises(ValueError, match="no forget samples"):
        neggrad_plus(base, train, [7], epochs=1, lr=1e-2)


# ---------------------------------------------------------------------------------------- SSD


def test_ssd_huge_selection_changes_nothing(base: nn.Module, train: TensorDataset) -> None:
    assert_same(snapshot(base), snapshot(ssd(base, train, FORGET, selection=1e9, batch_size=32)))


def test_ssd_dampens(
    base: nn.Module, train: TensorDataset, test_split: tuple[TensorDataset, TensorDataset]
) -> None:
    forget_te, retain_te = test_split
    out = ssd(base, train, FORGET, batch_size=32)
    old, new = dict(base.named_parameters()), dict(out.named_parameters())
    changed = sum(int((old[k] != new[k]).sum()) for k in old)
    assert changed > 0
    for k in old:  # beta <= 1: no parameter grows, none changes sign
        assert (new[k].abs() <= old[k].abs()).all(), k
        assert (new[k] * old[k] >= 0).all(), k
    old_buf, new_buf = dict(base.named_buffers()), dict(out.named_buffers())
    for k in old_buf:
        assert torch.equal(old_buf[k], new_buf[k]), k
    assert forget_confidence(out, forget_te) < forget_confidence(base, forget_te) - 0.2
    assert accuracy(out, retain_te) > 0.9
    # With lambda > alpha the raw ratio lambda * []_D / []_Df can exceed 1; beta is capped.
    capped = ssd(base, train, FORGET, batch_size=32, selection=1.0, dampening=50.0)
    for k, p in capped.named_parameters():
        assert (p.abs() <= old[k].abs()).all(), k
    # Stronger dampening (smaller lambda) moves the same selected weights further.
    strong = ssd(base, train, FORGET, batch_size=32, dampening=0.1)
    assert forget_confidence(strong, forget_te) <= forget_confidence(out, forget_te)


def test_ssd_max_samples_is_seeded(base: nn.Module, train: TensorDataset) -> None:
    a = ssd(base, train, FORGET, batch_size=32, max_samples=100, seed=5)
    b = ssd(base, train, FORGET, batch_size=32, max_samples=100, seed=5)
    assert_same(snapshot(a), snapshot(b))


def test_ssd_dampens_frozen_parameters_and_keeps_them_frozen(
    base: nn.Module, train: TensorDataset
) -> None:
    frozen = ssd(base, train, FORGET, batch_size=32)
    for p in base.parameters():
        p.requires_grad_(False)
    try:
        out = ssd(base, train, FORGET, batch_size=32)
    finally:
        for p in base.parameters():
            p.requires_grad_(True)
    assert_same(snapshot(frozen), snapshot(out))
    assert not any(p.requires_grad for p in out.parameters())


# ------------------------------------------------------------------------------------ timing


def test_per_class_seconds() -> None:
    result, seconds = per_class_seconds(lambda: sum(range(1000)))
    assert result == 499500
    assert 0.0 <= seconds < 5.0
