"""Customized gate control: PLE with a single extraction level."""

from __future__ import annotations

from typing import ClassVar

from mtl_core.architectures._base import ArchitectureConfig
from mtl_core.architectures._registry import ARCHITECTURES
from mtl_core.architectures.ple import PLE, ExpertCounts, PLEConfig


class CGCConfig(ExpertCounts):
    """Hyper-parameters of `CGC`: PLE's expert counts (`ExpertCounts`), one level."""


@ARCHITECTURES.register("cgc")
class CGC(PLE):
    """Customized Gate Control (Tang, Liu, Zhao, Gong, RecSys 2020, "Progressive Layered
    Extraction (PLE): A Novel Multi-Task Learning (MTL) Model for Personalized
    Recommendations"), the paper's single-level model.

    `PLE` with ``levels = 1``, built by PLE's code: every expert is a full trunk reading x;
    task t's gate (a Linear of the flattened input, softmax) mixes its ``experts_per_task``
    own experts and the ``shared_experts`` shared ones; heads read the mixtures. Shared
    parameters are the shared experts'; ``last_shared_parameters()`` their last
    parameterised block. Needs nothing from `NetworkParts` beyond what MMoE needs.

    Args:
        config: a `CGCConfig`.
    """

    name: ClassVar[str] = "cgc"
    config_cls: ClassVar[type[ArchitectureConfig]] = CGCConfig

    def settings(self) -> PLEConfig:
        assert isinstance(self.config, CGCConfig)
        return PLEConfig(levels=1, **self.config.model_dump())
