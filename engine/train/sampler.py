"""Weighted sampling under DDP (PyTorch has no distributed weighted sampler: pytorch#77154).

One seeded draw per epoch, with replacement, of `num_samples` indices by the weights; rank r
takes positions r, r + world_size, r + 2 * world_size, ... of it. So within an epoch the ranks'
shares are disjoint and their union is the one weighted draw; epochs differ (the seed moves
with the epoch) and a rerun with the same seed repeats them. Pure torch: Ray Train's
`prepare_data_loader(add_dist_sampler=False)` keeps it (with the default it would silently
replace any sampler that is not a DistributedSampler).
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


class WeightedDistributedSampler(Sampler[int]):
    def __init__(self, weights: Sequence[float], num_samples: int | None = None, rank: int = 0, world_size: int = 1,
                 seed: int = 0):
        weights = torch.tensor(np.array(weights, dtype=np.float64))  # a copy: Arrow-backed arrays are read-only
        if weights.ndim != 1 or len(weights) == 0:
            raise ValueError("weights must be a non-empty 1-d sequence")
        if (weights < 0).any() or not torch.isfinite(weights).all() or weights.sum() <= 0:
            raise ValueError("weights must be finite, non-negative and not all zero")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.weights, self.rank, self.world_size, self.seed = weights, rank, world_size, seed
        total = num_samples if num_samples is not None else len(weights)
        self.per_rank = math.ceil(total / world_size)  # every rank draws as many: DDP steps stay in lockstep
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_draw(self) -> torch.Tensor:
        """The whole epoch's draw (all ranks), a function of (seed, epoch) alone."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.multinomial(self.weights, self.per_rank * self.world_size, replacement=True, generator=generator)

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_draw()[self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return self.per_rank
