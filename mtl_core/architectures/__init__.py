"""Architectures: how an experiment's trunk blocks and heads are shared between tasks.

Importing this package registers every built-in architecture in `ARCHITECTURES`.
"""

from mtl_core.architectures import hard, mmoe, soft
from mtl_core.architectures._base import (
    Architecture,
    ArchitectureConfig,
    ModelOutput,
    MultiTaskModel,
    NetworkParts,
    split_blocks,
)
from mtl_core.architectures._registry import (
    ARCHITECTURES,
    build_model,
    list_architectures,
    make_architecture,
)
from mtl_core.architectures.hard import HardConfig, HardSharing, HardSharingModel
from mtl_core.architectures.mmoe import MMoE, MMoEConfig, MMoEModel
from mtl_core.architectures.soft import (
    SoftConfig,
    SoftSharing,
    SoftSharingModel,
    pairwise_squared_distance,
)

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "ArchitectureConfig",
    "HardConfig",
    "HardSharing",
    "HardSharingModel",
    "MMoE",
    "MMoEConfig",
    "MMoEModel",
    "ModelOutput",
    "MultiTaskModel",
    "NetworkParts",
    "SoftConfig",
    "SoftSharing",
    "SoftSharingModel",
    "build_model",
    "hard",
    "list_architectures",
    "make_architecture",
    "mmoe",
    "pairwise_squared_distance",
    "soft",
    "split_blocks",
]
