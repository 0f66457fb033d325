"""What a worker keeps per study and per experiment: the loaded study, its baselines, the data.

* `StudyContext`: the validated spec, the experiment, the Optuna study (with this worker's
  sampler and pruner) and the Δm% baselines, loaded once per study and reused for every trial.
* `baseline_key` / `load_or_train_baselines`: single-task baselines are trained once per
  experiment and baseline config, cached in ``mtl_baselines`` (`BaselineRepository`) and copied
  into the study's user attribute ``baselines``. Two workers that start the same new study at
  the same moment may both train them (there is no lock); both write the same row (an upsert),
  which costs one extra baseline training, never a wrong value.
* `DataCache`: prepared splits on the device, by (experiment, max_train_samples, device), so
  consecutive trials of a study do not reload or re-copy the data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from mtlsearch.search.local import baseline_config, study_baselines
from mtlsearch.search.optuna_factory import build_pruner, build_sampler, max_epochs
from mtlsearch.search.spec import StudySpec
from mtlsearch.worker.decisions import FailureStreak
from storage import BaselineRepository, Database, StudyInfo
from storage.optuna_snapshot import SnapshotStorage

if TYPE_CHECKING:
    from mtl_core.experiments import DataSplits, Experiment

logger = logging.getLogger(__name__)


@dataclass
class StudyContext:
    """One study as a worker uses it (built by `load_study_context`)."""

    info: StudyInfo
    spec: StudySpec
    experiment: Experiment
    study: optuna.Study
    #: The study's storage (this worker's snapshot of it) and the study's id there.
    storage: SnapshotStorage
    optuna_study_id: int
    baselines: dict[str, float] | None = None
    #: Budget slots taken as last seen (from the last pick, plus this worker's reservations
    #: since): only near the end is it worth checking whether the study is complete.
    #: Written by the asker thread.
    reserved_hint: int = 0
    #: The study's failure streak on this worker. Written by the teller thread.
    streak: FailureStreak = field(default_factory=FailureStreak)
    #: `time.monotonic()` of the last status read (cancel check); -inf: never. Teller's.
    status_checked: float = float("-inf")

    @property
    def id(self) -> str:
        return self.info.id

    def time_left(self, now: datetime | None = None) -> bool:
        """False once the study's ``time_budget_s`` (from its creation) has passed. A study
        confirming its best has time: the confirmation runs after the search's budget."""
        if self.info.time_budget_s is None or self.info.confirming:
            return True
        now = now or datetime.now(UTC)
        return (now - self.info.created_at).total_seconds() < self.info.time_budget_s


def worker_seed(spec_seed: int | None, worker_id: str) -> int | None:
    """The sampler seed of one worker: the spec's seed mixed with the worker id.

    Workers that all seeded their sampler with the spec's seed would draw the same random
    start-up configurations, trial after trial. None stays None (a fresh random seed).
    """
    if spec_seed is None:
        return None
    return (spec_seed * 1_000_003 + zlib.crc32(worker_id.encode())) % 2**31


def load_study_context(
    database: Database, info: StudyInfo, worker_id: str
) -> tuple[StudyContext | None, str | None]:
    """Load the Optuna study of ``info`` with this worker's sampler and pruner.

    Returns:
        ``(context, None)``, or ``(None, reason)`` when this worker cannot serve the study:
        its Optuna study does not exist (yet), or its experiment is not registered here.
    """
    from mtlsearch.search.spec_checks import validate_against_experiment

    try:
        spec = StudySpec.model_validate(info.spec)
        experiment = validate_against_experiment(spec)
    except ValueError as exc:  # SpecError, UnknownNameError, pydantic's ValidationError
        return None, f"cannot serve study {info.id}: {exc}"
    seeded = spec.model_copy(update={"seed": worker_seed(spec.seed, worker_id)})
    # The sampler reads the study once per batch of asks, not several times per ask.
    storage = SnapshotStorage(database.optuna_storage())
    try:
        optuna_study_id = storage.get_study_id_from_name(info.optuna_study_name)
        study = optuna.load_study(
            study_name=info.optuna_study_name,
            storage=storage,
            sampler=build_sampler(seeded, experiment),
            pruner=build_pruner(spec, experiment),
        )
    except KeyError:
        return None, f"study {info.id} has no Optuna study {info.optuna_study_name!r} yet"
    context = StudyContext(
        info=info,
        spec=spec,
        experiment=experiment,
        study=study,
        storage=storage,
        optuna_study_id=optuna_study_id,
    )
    return context, None


def baseline_key(spec: StudySpec) -> str:
    """The cache key of a study's baselines: a hash of the baseline training config.

    The device is left out: the same config on another device gives the same baselines up to
    floating-point noise, and recomputing them per device would waste T trainings each.
    """
    config = baseline_config(spec, "cpu").model_dump(mode="json")
    config.pop("device", None)
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def load_or_train_baselines(
    database: Database, context: StudyContext, *, device: str, data_dir: Path | str | None
) -> dict[str, float] | None:
    """The Δm% baselines of a ``delta_m`` study (None for other objectives).

    Order: the spec's own, the study's ``baselines`` attribute, the shared cache, and only
    then training them (stored in the cache and the study attribute).
    """
    spec = context.spec

    def cached_or_trained() -> dict[str, float]:
        key = baseline_key(spec)
        with database.session() as session:
            cached = BaselineRepository(session).get(spec.experiment, key)
        if cached is not None:
            return dict(cached.metrics)
        from mtl_core.metrics_delta import single_task_baselines

        logger.info("training the single-task baselines of %r (key %s)", spec.experiment, key)
        baselines = single_task_baselines(spec.experiment, baseline_config(spec, device), data_dir)
        with database.session() as session:
            BaselineRepository(session).put(spec.experiment, key, baselines)
        return baselines

    return study_baselines(spec, context.study, cached_or_trained)


def unservable(experiments: list[str], data_dir: Path | str | None) -> dict[str, str]:
    """The experiments of ``experiments`` whose data files are missing or corrupt under
    ``data_dir``, each with the one-line reason (checksums are checked once per process)."""
    from mtl_core.errors import DataError
    from mtl_core.experiments import get_experiment
    from mtl_core.experiments.data import verify_files

    root = Path(data_dir) if data_dir is not None else None
    out: dict[str, str] = {}
    for name in experiments:
        try:
            verify_files(root, get_experiment(name).files)
        except DataError as exc:
            out[name] = str(exc)
    return out


def planned_epochs(context: StudyContext, config_epochs: int | None) -> int:
    """The epochs a trial trains: its own, else the spec's largest, else the experiment's."""
    if config_epochs is not None:
        return config_epochs
    return max_epochs(context.spec, context.experiment) or context.experiment.defaults.epochs


class DataCache:
    """Prepared data splits kept on the device between trials (least recently used out).

    Args:
        data_dir: where the experiments' data files are.
        max_entries: how many (experiment, max_train_samples, device) entries to keep.
    """

    def __init__(self, data_dir: Path | str | None, max_entries: int = 2) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries=}")
        self.data_dir = data_dir
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, int | None, str], DataSplits] = OrderedDict()

    def get(self, experiment: Experiment, max_train_samples: int | None, device: str) -> DataSplits:
        """The splits of ``experiment`` on ``device`` (loaded on first use)."""
        from mtl_core.trainer import prepare_data, resolve_device

        key = (experiment.name, max_train_samples, device)
        data = self._entries.get(key)
        if data is not None:
            self._entries.move_to_end(key)
            return data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. non-writable numpy arrays
            data = prepare_data(
                experiment, self.data_dir, resolve_device(device), max_train_samples
            )
        self._entries[key] = data
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return data

    def __len__(self) -> int:
        return len(self._entries)


__all__ = [
    "DataCache",
    "StudyContext",
    "baseline_key",
    "load_or_train_baselines",
    "load_study_context",
    "planned_epochs",
    "unservable",
    "worker_seed",
]
