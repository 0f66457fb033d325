"""Architectures: how an experiment's trunk blocks and heads are shared between tasks.

Importing this package registers every built-in architecture in `ARCHITECTURES`.
"""

from mtl_core.architectures import cross_stitch, hard, ltb, mmoe, mtan, soft
from mtl_core.architectures._base import (
    Architecture,
    ArchitectureConfig,
    ModelOutput,
    MultiTaskModel,
    NetworkParts,
    split_blocks,
    stage_shapes,
)
from mtl_core.architectures._registry import (
    ARCHITECTURES,
    build_model,
    list_architectures,
    make_architecture,
)
from mtl_core.architectures.cross_stitch import CrossStitch, CrossStitchConfig, CrossStitchModel
from mtl_core.architectures.hard import HardConfig, HardSharing, HardSharingModel
from mtl_core.architectures.ltb import LearningToBranch, LTBConfig, LTBModel
from mtl_core.architectures.mmoe import MMoE, MMoEConfig, MMoEModel
from mtl_core.architectures.mtan import MTAN, MTANConfig, MTANModel
from mtl_core.architectures.soft import (
    SoftConfig,
    SoftSharing,
    SoftSharingModel,
    pairwise_squared_distance,
)

__all__ = [
    "ARCHITECTURES",
    "MTAN",
    "Architecture",
    "ArchitectureConfig",
    "CrossStitch",
    "CrossStitchConfig",
    "CrossStitchModel",
    "HardConfig",
    "HardSharing",
    "HardSharingModel",
    "LTBConfig",
    "LTBModel",
    "LearningToBranch",
    "MMoE",
    "MMoEConfig",
    "MMoEModel",
    "MTANConfig",
    "MTANModel",
    "ModelOutput",
    "MultiTaskModel",
    "NetworkParts",
    "SoftConfig",
    "SoftSharing",
    "SoftSharingModel",
    "build_model",
    "cross_stitch",
    "hard",
    "list_architectures",
    "ltb",
    "make_architecture",
    "mmoe",
    "mtan",
    "pairwise_squared_distance",
    "soft",
    "split_blocks",
    "stage_shapes",
]
