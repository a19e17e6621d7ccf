"""What ``rtseg arch show`` reports: params, FLOPs (multiply-adds) and the operator list of an arch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rtseg.arch import Arch
from rtseg.flops import FLOPS_CONVENTION, count_flops, count_params, op_flops
from rtseg.ops import OpSignature
from rtseg.spaces import build_model, get_space


@dataclass
class ArchSummary:
    arch: Arch
    input_hw: tuple[int, int]
    params: int
    flops: int
    ops: list[OpSignature]
    op_flops: list[int]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "name": self.arch.name,
            "space": self.arch.space,
            "num_classes": self.arch.num_classes,
            "head": self.arch.head,
            "input": list(self.input_hw),
            "params": self.params,
            "flops": self.flops,
            "flops_convention": FLOPS_CONVENTION,
            "ops": [s.to_dict() for s in self.ops],
            "op_flops": self.op_flops,
            "arch": self.arch.to_dict(),
        }
        d.update(self.extra)
        return d


def summarize(arch: Arch, h: int, w: int) -> ArchSummary:
    space = get_space(arch.space)
    space.check_input(h, w)
    model = build_model(arch)
    sigs = space.signatures(arch, h, w)
    return ArchSummary(arch, (h, w), count_params(model), count_flops(model, h, w), sigs, [op_flops(s) for s in sigs])
