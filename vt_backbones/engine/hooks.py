"""Hooks of ours, registered in mmengine's ``HOOKS``.

``IterationSeedHook`` (added by ``tools/train.py``) reseeds python, numpy and torch before each training batch
is fetched, from the run's seed and the iteration, so an iteration-based run resumed from iteration N draws
exactly the random numbers (augmentation, samplers, drop path) the uninterrupted run drew. mmengine alone does
not save random states: a resumed run diverges.
"""
from __future__ import annotations

import random
from typing import Any, Iterator

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # every device's generator


def iteration_seed(run_seed: int, index: int) -> int:
    """A 32-bit seed for iteration (or epoch) ``index`` of a run seeded with ``run_seed``."""
    return int(np.random.SeedSequence([run_seed & 0xFFFFFFFF, index]).generate_state(1)[0])


class _SeededBatches:
    """The train loop's batch iterator, reseeding before each fetch; the first ``replayed`` fetches are the
    batches a resumed iteration-based loop draws again to skip them, and are left alone."""

    def __init__(self, batches: Iterator, loop: IterBasedTrainLoop, run_seed: int, replayed: int) -> None:
        self.batches, self.loop, self.run_seed, self.replayed = batches, loop, run_seed, replayed

    def __iter__(self) -> _SeededBatches:
        return self

    def __next__(self) -> Any:
        if self.replayed:
            self.replayed -= 1
        else:
            _seed_all(iteration_seed(self.run_seed, self.loop.iter))
        return next(self.batches)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.batches, name)


@HOOKS.register_module(force=True)
class IterationSeedHook(Hook):
    """Makes a resumed run draw the random numbers of the uninterrupted one (see the module docstring).

    Iteration-based loops are reseeded before every batch, exactly. Epoch-based loops (which resume at
    epoch boundaries) are reseeded at each epoch start; their data workers keep mmengine's own seeding.
    """
    priority = 'LOWEST'  # after everything else that runs before the first batch

    def before_train_epoch(self, runner: Any) -> None:
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop):
            if not isinstance(loop.dataloader_iterator, _SeededBatches):
                loop.dataloader_iterator = _SeededBatches(loop.dataloader_iterator, loop, runner.seed, loop.iter)
        else:
            _seed_all(iteration_seed(runner.seed, runner.epoch))
