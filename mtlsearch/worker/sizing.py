"""How many trials a worker trains together: ``--batch K``, or ``--batch auto`` estimated once
per kind of trial and lowered when a run of that kind runs out of memory."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import mtl_core.batched as batched
from mtlsearch.worker.decisions import Outcome, out_of_memory

if TYPE_CHECKING:
    from mtl_core.experiments import DataSplits
    from mtlsearch.worker.jobs import TrainingJob

logger = logging.getLogger(__name__)

#: Largest K that ``--batch auto`` picks on a CPU (the memory estimate alone allows far more).
AUTO_MAX_CPU = 32
#: Largest K that ``--batch auto`` picks on a GPU.
AUTO_MAX_GPU = 512


class BatchSizer:
    """K for each job of a worker.

    Args:
        k: slots per run, or ``"auto"`` (`mtl_core.batched.auto_batch_size`, capped at
            `AUTO_MAX_CPU` on a CPU and `AUTO_MAX_GPU` on a GPU).
        device: where the worker trains.
        data_for: a job's prepared data on the device (the estimate measures on it).
    """

    def __init__(
        self, k: int | str, device: str, data_for: Callable[[Any], DataSplits | None]
    ) -> None:
        if k != "auto" and (not isinstance(k, int) or k < 1):
            raise ValueError(f"k must be an integer >= 1 or 'auto', got {k=}")
        self.k = k
        self.device = device
        self.data_for = data_for
        self._auto: dict[tuple[object, ...], int] = {}

    def auto_key(self, job: TrainingJob) -> tuple[object, ...]:
        """What the memory of one trial depends on: experiment, architecture and its params,
        batch size, data size and device."""
        from mtl_core.trainer import resolve_config

        resolved = resolve_config(job.config, job.study.experiment)
        return (
            job.study.experiment.name,
            resolved.architecture,
            json.dumps(resolved.architecture_params, sort_keys=True, default=str),
            resolved.batch_size,
            resolved.max_train_samples,
            self.device,
        )

    def slots_for(self, job: TrainingJob) -> int:
        """K for this job (auto: estimated once per `auto_key`)."""
        if isinstance(self.k, int):
            return self.k
        key = self.auto_key(job)
        if key not in self._auto:
            cap = AUTO_MAX_CPU if self.device == "cpu" else AUTO_MAX_GPU
            k = batched.auto_batch_size(
                job.study.experiment, job.config, self.device, data=self.data_for(job), max_k=cap
            )
            self._auto[key] = k
            logger.info("batch size for %s: K=%d", key, k)
        return self._auto[key]

    def k_for(self, job: TrainingJob) -> int:
        """`slots_for`, or 1 for a trial without a batched form or one that cannot be sized."""
        if not batched.batchable(job.config):
            return 1
        try:
            return self.slots_for(job)
        except Exception as exc:
            logger.warning("cannot size the batch (%s); training one at a time", exc)
            return 1

    def fits_at_most(self, job: TrainingJob, k: int) -> None:
        """A run of ``job``'s kind ran out of memory above ``k``: auto keeps to ``k`` from now."""
        if self.k == "auto":
            key = self.auto_key(job)
            self._auto[key] = min(self._auto.get(key, k), k)

    def out_of_memory(self, exc: BaseException, job: TrainingJob) -> Outcome:
        """The outcome of ``job`` out of memory alone (K = 1)."""
        from mtl_core.trainer import resolve_config

        batch_size = resolve_config(job.config, job.study.experiment).batch_size
        return out_of_memory(exc, self.device, batch_size)


__all__ = ["AUTO_MAX_CPU", "AUTO_MAX_GPU", "BatchSizer"]
