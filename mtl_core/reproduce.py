"""Retrain a recorded trial alone and compare its metrics with the recorded ones.

A trial's record (the JSON of ``GET /api/v1/studies/{id}/trials/{number}``, which
``mtlsearch.client.Client.trial`` returns) holds everything that determines its run:

* ``config``: the resolved `TrialConfig`, with its ``seed`` (the model's initial weights, the
  schedule's and the strategy's draws) and its ``data_seed`` (the order of the training
  batches, shared by every trial of one batched pass);
* ``num_slots``: the K of the batched pass it trained in. A slot's arithmetic does not depend
  on what the other slots hold, but it does depend on K (batched kernels sum in another order),
  so ``BatchedRun([config], num_slots=K)`` retrains the trial alone, bit for bit on CPU with
  the same torch version and thread count; on a GPU, within float tolerance.

    record = Client(url).trial(study_id, 12)
    reproduction = retrain_trial(record, data_dir="data")
    assert reproduction.identical, reproduction.differences()

A pruned trial is stopped after the epochs it ran (its schedule still plans all of them, as it
did). A trial recorded before ``num_slots`` was kept retrains at K = 1: close, not exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl_core.batched import BatchedRun, SlotReport
from mtl_core.config import TrialConfig
from mtl_core.errors import ConfigError
from mtl_core.results import TrialResult
from mtl_core.trial_setup import resolve_device

#: What a record without ``num_slots`` (from before it was kept) retrains at.
UNKNOWN_K_NOTE = (
    "recorded before mtlsearch kept the K of a trial's batched pass (num_slots): retrained "
    "at K = 1, reproducible only approximately (K unknown)"
)


def trial_config_from_record(record: Mapping[str, Any], device: str | None = None) -> TrialConfig:
    """The `TrialConfig` that retrains a recorded trial (its ``config``, seeds included).

    Args:
        record: a trial record (``GET /api/v1/studies/{id}/trials/{number}``).
        device: train there instead of the recorded device (None: the recorded one).

    Raises:
        ConfigError: the record has no config (the trial failed before it had one).
    """
    config = record.get("config")
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"trial {record.get('number', '?')} has no recorded config: it failed before "
            "training, there is nothing to retrain"
        )
    data = dict(config)
    if device is not None:
        data["device"] = device
    try:
        return TrialConfig.model_validate(data)
    except ValueError as exc:
        raise ConfigError(f"the trial's recorded config is not a TrialConfig: {exc}") from None


@dataclass(frozen=True)
class Reproduction:
    """A recorded trial retrained alone, beside its record.

    Args:
        result: the retrained trial.
        recorded: the record it was retrained from.
        num_slots: the K it was retrained at (the recorded one when known, else 1).
        exact_expected: the record names its K, and both runs are on the CPU: the metrics
            should be equal bit for bit.
        note: why only approximate agreement is expected, else None.
    """

    result: TrialResult
    recorded: Mapping[str, Any]
    num_slots: int
    exact_expected: bool
    note: str | None = None

    def pairs(self) -> list[tuple[str, float | None, float]]:
        """``("val/<task>" or "test/<task>", recorded, retrained)`` for every recorded metric."""
        out: list[tuple[str, float | None, float]] = []
        for split, retrained in (
            ("val", self.result.val_metrics),
            ("test", self.result.test_metrics),
        ):
            for task, value in (self.recorded.get(f"{split}_metrics") or {}).items():
                out.append((f"{split}/{task}", value, retrained.get(task, math.nan)))
        return out

    @property
    def identical(self) -> bool:
        """Every recorded validation and test metric equals the retrained one (``==``; a
        non-finite metric, recorded as null, matches a non-finite one)."""
        pairs = self.pairs()
        return bool(pairs) and all(_same(recorded, new) for _, recorded, new in pairs)

    def differences(self) -> dict[str, float]:
        """``|recorded - retrained|`` of each metric that differs."""
        return {
            name: math.inf if recorded is None else abs(recorded - new)
            for name, recorded, new in self.pairs()
            if not _same(recorded, new)
        }


def _same(recorded: float | None, new: float) -> bool:
    return not math.isfinite(new) if recorded is None else recorded == new


def retrain_trial(
    record: Mapping[str, Any],
    data_dir: Path | str | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> Reproduction:
    """Retrain a recorded trial alone, in a pass of the K it trained in (module docstring).

    Args:
        record: a trial record (``GET /api/v1/studies/{id}/trials/{number}``).
        data_dir: where the experiment's data files are.
        device: where to retrain (default the CPU, where reproduction is exact).
        progress: show a progress bar.

    Raises:
        ConfigError: no recorded config or metrics, an unknown experiment (load its plugin
            first), a bad device, or a population member that copied another trial.
        DataError: a missing data file.
    """
    config = trial_config_from_record(record, device)
    lineage = (record.get("population") or {}).get("lineage")
    if lineage:
        raise ConfigError(
            f"trial {record.get('number', '?')} trained in a population and took another "
            f"trial's state after epoch {lineage[0].get('epoch', '?')}: its config alone does "
            "not determine its run; build_loss_from_best(record) replays its weight trajectory"
        )
    if not record.get("val_metrics") and not record.get("test_metrics"):
        raise ConfigError(
            f"trial {record.get('number', '?')} has no recorded metrics (state "
            f"{record.get('state', 'unknown')}): nothing to compare a retrained run with"
        )
    recorded_k = record.get("num_slots")
    num_slots = int(recorded_k) if recorded_k else 1
    recorded_device = str(record["config"].get("device") or "cpu")
    on_cpu = resolve_device(device).type == "cpu" and _device_kind(recorded_device) == "cpu"
    note = None
    if not recorded_k:
        note = UNKNOWN_K_NOTE
    elif not on_cpu:
        note = (
            f"trained on {recorded_device}, retrained on {device}: equal within float "
            "tolerance, not bit for bit (exact reproduction needs the CPU)"
        )
    stop_after = _stop_after(record, config)

    def on_epoch(reports: list[SlotReport]) -> list[int]:
        if stop_after is None:
            return []
        return [r.slot for r in reports if r.report.epoch >= stop_after]

    run = BatchedRun([config], data_dir, num_slots=num_slots)
    (finished,) = run.run(on_epoch=on_epoch, progress=progress)
    return Reproduction(
        result=finished.result,
        recorded=record,
        num_slots=num_slots,
        exact_expected=note is None,
        note=note,
    )


def _device_kind(name: str) -> str:
    """``"cuda"`` of ``"cuda:1"``: the kind of a device name (no check that it exists)."""
    return name.split(":", 1)[0]


def _stop_after(record: Mapping[str, Any], config: TrialConfig) -> int | None:
    """The epoch a pruned trial was stopped after (None: it ran as its config says)."""
    epochs_run = record.get("epochs_run")
    if record.get("state") != "pruned" or not isinstance(epochs_run, int) or epochs_run < 1:
        return None
    return epochs_run if config.epochs is None or epochs_run < config.epochs else None


__all__ = [
    "UNKNOWN_K_NOTE",
    "Reproduction",
    "retrain_trial",
    "trial_config_from_record",
]
