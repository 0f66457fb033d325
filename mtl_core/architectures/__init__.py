"""Architectures: how an experiment's trunk blocks and heads are shared between tasks.

Importing this package registers every built-in architecture in `ARCHITECTURES`.
"""

from mtl_core.architectures import cgc, cross_stitch, dselect_k, hard, ltb, mmoe, mtan, ple, soft
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
from mtl_core.architectures.cgc import CGC, CGCConfig
from mtl_core.architectures.cross_stitch import CrossStitch, CrossStitchConfig, CrossStitchModel
from mtl_core.architectures.dselect_k import DSelectK, DSelectKConfig, DSelectKModel
from mtl_core.architectures.hard import HardConfig, HardSharing, HardSharingModel
from mtl_core.architectures.ltb import LearningToBranch, LTBConfig, LTBModel
from mtl_core.architectures.mmoe import MMoE, MMoEConfig, MMoEModel
from mtl_core.architectures.mtan import MTAN, MTANConfig, MTANModel
from mtl_core.architectures.ple import PLE, PLEConfig, PLEModel
from mtl_core.architectures.soft import (
    SoftConfig,
    SoftSharing,
    SoftSharingModel,
    pairwise_squared_distance,
)

__all__ = [
    "ARCHITECTURES",
    "CGC",
    "MTAN",
    "PLE",
    "Architecture",
    "ArchitectureConfig",
    "CGCConfig",
    "CrossStitch",
    "CrossStitchConfig",
    "CrossStitchModel",
    "DSelectK",
    "DSelectKConfig",
    "DSelectKModel",
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
    "PLEConfig",
    "PLEModel",
    "SoftConfig",
    "SoftSharing",
    "SoftSharingModel",
    "build_model",
    "cgc",
    "cross_stitch",
    "dselect_k",
    "hard",
    "list_architectures",
    "ltb",
    "make_architecture",
    "mmoe",
    "mtan",
    "pairwise_squared_distance",
    "ple",
    "soft",
    "split_blocks",
    "stage_shapes",
]
