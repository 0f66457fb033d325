"""Every slot evaluated at once: a split's outputs in chunks, without autograd.

A split's outputs are one ``[K, N, ...]`` tensor per task. The test split's outputs are kept
while no optimizer step has changed the parameters, so the trials that leave a batch at one
epoch boundary share one pass over it.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from mtl_core.batched.stacking import Params, StackedForward
from mtl_core.experiments import Split
from mtl_core.trial_setup import EVAL_CHUNK


class SlotEvaluator:
    """Outputs of K stacked models on a split.

    Args:
        forward: the batched forward without per-trial losses (`StackedForward` or its K = 1
            form); its template is set back to training mode after each pass.
        device: where the models live; each chunk is moved there.
        precision: ``"bf16"`` evaluates under autocast, as training does.
        batch_size: the training batch (the smallest chunk).
        num_slots: K.
    """

    def __init__(
        self,
        forward: StackedForward,
        device: torch.device,
        precision: Literal["fp32", "bf16"],
        batch_size: int,
        num_slots: int,
    ) -> None:
        self.forward = forward
        self.device = device
        self.precision = precision
        # K trials see each chunk, and no activation is kept for a backward, so K x chunk may
        # be a few training batches' worth.
        self.chunk_size = min(EVAL_CHUNK, max(batch_size, 4 * EVAL_CHUNK // num_slots))
        self._test: tuple[int, list[Tensor]] | None = None

    @torch.no_grad()
    def predict(self, params: Params, buffers: Params, split: Split) -> list[Tensor]:
        """Every slot's outputs on ``split``: one ``[K, N, ...]`` tensor per task."""
        chunks: list[tuple[Tensor, ...]] = []
        for start in range(0, len(split), self.chunk_size):
            x = split.x[start : start + self.chunk_size].to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
                chunks.append(self.forward(params, buffers, x, training=False))
        self.forward.template.train(True)
        return [torch.cat([c[t] for c in chunks], dim=1) for t in range(len(chunks[0]))]

    def test_outputs(
        self, version: int, params: Params, buffers: Params, test: Split
    ) -> list[Tensor]:
        """`predict` on the test split, reused while ``version`` (the optimizer's step count)
        is unchanged."""
        if self._test is None or self._test[0] != version:
            self._test = (version, self.predict(params, buffers, test))
        return self._test[1]
