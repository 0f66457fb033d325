"""Pick how many trials fit in one batch (`auto_batch_size`).

On CUDA the footprint is measured: one probe step at K=1 and one at K=4 on a real training
batch give the fixed cost and the cost per trial (peak ``max_memory_allocated`` difference);
K is what fits in the free device memory times a safety margin. On the CPU it is estimated
from the parameter count (parameters, gradients, two optimizer moments, temporaries) and the
activation sizes of one forward pass, against the available RAM. Either way the answer is
clamped to ``[1, max_k]``; `mtl_core.batched.train_batch` still halves K on an out-of-memory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from mtl_core.config import TrialConfig
from mtl_core.experiments import DataSplits, Experiment, get_experiment
from mtl_core.trial_setup import prepare_data, resolve_config

logger = logging.getLogger(__name__)

#: Copies of the parameters a trial keeps: weights, gradients, 2 Adam moments, temporaries.
PARAM_COPIES = 6
#: Activation bytes are counted this many times (saved for backward, their gradients, slack).
ACTIVATION_FACTOR = 3
PROBE_SLOTS = 4


def _available_ram() -> int:
    """MemAvailable from /proc/meminfo in bytes (8 GiB when it cannot be read)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def estimate_trial_bytes(model: nn.Module, x: Tensor) -> int:
    """Estimated bytes one trial needs on the CPU for a training step on batch ``x``."""
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    activation = 0

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal activation
        if isinstance(output, Tensor):
            activation += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return PARAM_COPIES * param_bytes + ACTIVATION_FACTOR * activation


def auto_batch_size(
    experiment: Experiment | str,
    config: TrialConfig,
    device: torch.device | str,
    data: DataSplits | None = None,
    data_dir: Path | str | None = None,
    safety: float = 0.7,
    max_k: int = 1024,
) -> int:
    """How many trials like ``config`` to train together on ``device`` (>= 1).

    Args:
        experiment: the experiment (or its name).
        config: a representative trial (architecture, batch size, optimizer).
        device: where the batch will train.
        data: prepared splits (loaded from ``data_dir`` if None).
        data_dir: the data directory, when ``data`` is None.
        safety: fraction of the free memory the batch may use.
        max_k: upper bound of the answer.
    """
    if not 0 < safety <= 1:
        raise ValueError(f"safety must be in (0, 1], got {safety=}")
    if max_k < 1:
        raise ValueError(f"max_k must be >= 1, got {max_k=}")
    exp = get_experiment(experiment) if isinstance(experiment, str) else experiment
    device = torch.device(device)
    config = config.model_copy(update={"device": str(device), "experiment": exp.name})
    resolved = resolve_config(config, exp)
    if data is None:
        data = prepare_data(exp, data_dir, device, resolved.max_train_samples)
    x = data.train.x[: resolved.batch_size].to(device)
    if device.type == "cuda":
        per_trial, fixed = _probe_cuda(config, data, device)
        free, _total = torch.cuda.mem_get_info(device)
        budget = free * safety - fixed
        k = int(budget // per_trial) if per_trial > 0 else max_k
        logger.info(
            "auto batch size: %.1f MiB per trial, %.1f MiB fixed, %.1f MiB free -> K=%d",
            per_trial / 2**20,
            fixed / 2**20,
            free / 2**20,
            k,
        )
    else:
        from mtl_core.architectures import build_model

        torch.manual_seed(resolved.seed)
        model = build_model(
            resolved.architecture, resolved.architecture_params, exp.parts_for(data)
        ).to(device)
        per_trial = estimate_trial_bytes(model, x)
        k = int(_available_ram() * safety // max(per_trial, 1))
    return max(1, min(max_k, k))


def _probe_cuda(config: TrialConfig, data: DataSplits, device: torch.device) -> tuple[float, float]:
    """(bytes per trial, fixed bytes) from probe steps at K=1 and K=`PROBE_SLOTS`."""
    from mtl_core.batched.trainer import BatchedRun

    peaks = []
    for k in (1, PROBE_SLOTS):
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        configs = [config.model_copy(update={"seed": config.seed + i}) for i in range(k)]
        run = BatchedRun(configs, data=data)
        run.probe_step()
        torch.cuda.synchronize(device)
        peaks.append(torch.cuda.max_memory_allocated(device) - base)
        del run
    per_trial = max((peaks[1] - peaks[0]) / (PROBE_SLOTS - 1), 1.0)
    fixed = max(peaks[0] - per_trial, 0.0)
    return per_trial, fixed
