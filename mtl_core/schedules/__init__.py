"""Training schedules: which tasks train at each step, and how strongly.

Importing this package registers every built-in schedule in `SCHEDULES`.
"""

from mtl_core.schedules import alternating, aux_decay, curriculum, joint, pretrain
from mtl_core.schedules._base import Schedule, ScheduleConfig
from mtl_core.schedules._registry import SCHEDULES, build_schedule, list_schedules
from mtl_core.schedules.alternating import Alternating, AlternatingConfig
from mtl_core.schedules.aux_decay import AuxDecay, AuxDecayConfig
from mtl_core.schedules.curriculum import Curriculum, CurriculumConfig
from mtl_core.schedules.joint import Joint
from mtl_core.schedules.pretrain import Pretrain, PretrainConfig

__all__ = [
    "SCHEDULES",
    "Alternating",
    "AlternatingConfig",
    "AuxDecay",
    "AuxDecayConfig",
    "Curriculum",
    "CurriculumConfig",
    "Joint",
    "Pretrain",
    "PretrainConfig",
    "Schedule",
    "ScheduleConfig",
    "alternating",
    "aux_decay",
    "build_schedule",
    "curriculum",
    "joint",
    "list_schedules",
    "pretrain",
]
