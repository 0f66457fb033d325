"""The order in which a batch's trials see the training set, and the rows of each step."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class EpochOrder:
    """One shuffle of the training rows per epoch, from the batch's data seed; steps of n batches.

    Every trial of a batch at epoch e reads the same permutation, so a trial sees the same
    data whatever K it trains in. A step reads ``batches_per_step`` consecutive batches of
    it (MoDo, SDMGrad: 3; otherwise 1); a last step too small to split into that many
    batches is left out.

    Args:
        n_train: training rows.
        batch_size: rows per batch.
        batches_per_step: batches one optimisation step reads.
        seed: the batch's data seed.
        device: where the permutations live (the training split's device).
    """

    def __init__(
        self,
        n_train: int,
        batch_size: int,
        batches_per_step: int,
        seed: int,
        device: torch.device,
    ) -> None:
        self.n_train = n_train
        self.batches_per_step = batches_per_step
        self.rows_per_step = batch_size * batches_per_step
        full, rest = divmod(n_train, self.rows_per_step)
        self.steps_per_epoch = full + int(rest >= batches_per_step)
        self._generator = torch.Generator().manual_seed(seed)
        self._device = device
        self._permutations: list[Tensor] = []

    def permutation(self, epoch: int) -> Tensor:
        """``[N]``: the row order of ``epoch`` (drawn in epoch order, once)."""
        while len(self._permutations) <= epoch:
            order = torch.randperm(self.n_train, generator=self._generator)
            self._permutations.append(order.to(self._device))
        return self._permutations[epoch]

    def epoch_rows(self, slot_epochs: Sequence[int]) -> Tensor:
        """The row order of each slot's epoch: ``[N]`` when all share one, else ``[K, N]``."""
        if len(set(slot_epochs)) == 1:
            return self.permutation(slot_epochs[0])
        return torch.stack([self.permutation(e) for e in slot_epochs])

    def step_batches(self, rows: Tensor, step: int) -> list[Tensor]:
        """The batches of ``step`` of an `epoch_rows` order (split on its last dimension)."""
        part = rows[..., step * self.rows_per_step : (step + 1) * self.rows_per_step]
        return list(part.tensor_split(self.batches_per_step, dim=-1))
