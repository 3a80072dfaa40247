"""MuonClip (K2): Muon + AdamW, QK-Clip for MLA, aux-loss-free MoE balancing. See docs/optim.md.

Importing this package imports torch; nothing runs at import time.
"""

from agentrl.optim.balance import ExpertLoadBalancer
from agentrl.optim.build import build_muonclip
from agentrl.optim.config import MuonClipConfig
from agentrl.optim.groups import build_param_groups, check_coverage
from agentrl.optim.optimizer import MuonClip
from agentrl.optim.qkclip import QKClip

__all__ = [
    "ExpertLoadBalancer",
    "MuonClip",
    "MuonClipConfig",
    "QKClip",
    "build_muonclip",
    "build_param_groups",
    "check_coverage",
]
