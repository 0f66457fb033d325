"""What optuna-dashboard shows of a study besides its trials: its objectives' names and a note.

Without names the dashboard calls the objective "Objective 0". `create_optuna_study` names
them (Optuna's ``study.set_metric_names``) after `metric_names`: ``delta_m`` or
``weighted_mean`` for one objective, ``<task>_<metric>`` per task for ``multi``.

The dashboard's Hyperparameter Importance chart is PED-ANOVA, which looks only at which
trials are in the best 10 % and normalises the importances to sum to 1: they depend on the
trials' order, never on the objective's spread, so a study whose values all lie within the
seed noise still shows one parameter as decisive. Two things say so where a reader looks:

* the study user attribute `IMPORTANCES_ATTR`, one line in the "Study User Attributes" table
  right under the chart;
* the study's note (optuna-dashboard's Note tab): what the objective is, and how to tell the
  objective's range from the seed noise (the repeats of `mtlsearch.search.repeats`, or
  re-training the best configuration at other seeds).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import optuna

from mtlsearch.search.objective import directions
from mtlsearch.search.repeats import REPEAT_OF_ATTR
from mtlsearch.search.spec import StudySpec

if TYPE_CHECKING:
    from mtl_core.experiments import Experiment


#: The study user attribute that warns how to read the importances (the dashboard shows it).
IMPORTANCES_ATTR = "reading_importances"
IMPORTANCES_HINT = (
    "PED-ANOVA: the importances rank the parameters by how they set the best 10 % of trials "
    "apart and sum to 1 whatever the objective's spread. Believe them only if the objective's "
    "range (History chart) is larger than the seed noise; see the Note tab."
)
_DONE = {"maximize": "maximised", "minimize": "minimised"}


def metric_names(spec: StudySpec, experiment: Experiment) -> list[str]:
    """The names of the study's objective values, in order."""
    if spec.objective.kind == "multi":
        return [f"{task.name}_{task.metric}" for task in experiment.tasks]
    return [spec.objective.kind]


def _objective_line(spec: StudySpec, experiment: Experiment) -> str:
    tasks = ", ".join(f"{task.name} ({task.metric})" for task in experiment.tasks)
    kind = spec.objective.kind
    if kind == "delta_m":
        return (
            f"**Objective `delta_m`**, maximised: Δm%, the mean relative gain of the validation "
            f"metrics over single-task baselines, in percent; tasks {tasks}."
        )
    if kind == "weighted_mean":
        return (
            f"**Objective `weighted_mean`**, maximised: Σ c_t s_t M_t / Σ c_t of the "
            f"validation metrics (s_t = -1 where lower is better); tasks {tasks}."
        )
    named = zip(metric_names(spec, experiment), directions(spec, experiment), strict=True)
    listed = ", ".join(f"`{name}` ({_DONE[direction]})" for name, direction in named)
    return f"**Objectives**, one per task's validation metric: {listed}; a Pareto front."


def study_note(spec: StudySpec, experiment: Experiment) -> str:
    """The note (Markdown) `create_optuna_study` saves on a new study."""
    return (
        f"{_objective_line(spec, experiment)}\n\n"
        "**Reading the Hyperparameter Importance chart.** Its importances (PED-ANOVA) say "
        "which parameters set the best 10 % of trials apart from the rest, and always sum to "
        "1, whatever the spread of the objective: a parameter at 0.99 orders the trials, which "
        "does not mean the order matters. Compare first the objective's range in the History "
        "chart with the seed noise: a trial with the user attribute "
        f"`{REPEAT_OF_ATTR}` re-ran that earlier trial's configuration at another seed, and "
        "the gap between the two is the noise; without such trials, train the best trial's "
        "configuration again at a few other seeds (`mtlsearch train ... --seed N`). When the "
        "range is within the noise, the importances rank noise: on this experiment the "
        "searched parameters make no difference that the trials can show."
    )


def label_study(study: optuna.Study, spec: StudySpec, experiment: Experiment) -> None:
    """Name the objectives of a new `study`, warn how to read its importances and save its
    note (a few writes, once)."""
    from optuna_dashboard import save_note  # the dashboard's own API; only needed here

    with warnings.catch_warnings():
        # set_metric_names has been "experimental" since Optuna 3.2.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(metric_names(spec, experiment))
    study.set_user_attr(IMPORTANCES_ATTR, IMPORTANCES_HINT)
    save_note(study, study_note(spec, experiment))


__all__ = ["IMPORTANCES_ATTR", "IMPORTANCES_HINT", "label_study", "metric_names", "study_note"]
