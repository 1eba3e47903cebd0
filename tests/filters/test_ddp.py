"""Filter training under torch.distributed (gloo, 2 CPU processes): each rank sees half the
data through a DistributedSampler, only alpha's gradients are all-reduced, and every rank ends
with the same bank."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.c1(x)).mean((2, 3)))


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    from lethe.data import load_digits, to_dataset
    from lethe.data._preprocess import Preprocess
    from lethe.filters import FilterBank, train

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = _Tiny().eval()
        data = load_digits()
        ds = to_dataset(data.subset(range(256)), Preprocess((1, 8, 8), (0.5,), (0.5,)))
        bank = train(model, FilterBank.init(model, 10), ds, epochs=1, batch_size=32, progress=False)
        Path(out_dir, f"rank{rank}.txt").write_text(bank.digest)
    finally:
        dist.destroy_process_group()


def test_ranks_end_with_the_same_bank(tmp_path: Path) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    digests = {(tmp_path / f"rank{r}.txt").read_text() for r in range(2)}
    assert len(digests) == 1
