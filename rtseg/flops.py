"""FLOPs and parameter counts, with fvcore.

Convention: fvcore counts one fused multiply-add as one flop, so every figure rtseg reports as
"FLOPs" is a count of multiply-adds (MACs), the convention of the SSR paper's Table 7 and of most
segmentation papers. Per-operator counts are cached by signature and add up to the whole network.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Iterable

import torch
from torch import nn

from rtseg.ops import OpSignature, build_op, op_class

FLOPS_CONVENTION = "multiply-adds (fvcore: one fused multiply-add counts as one flop)"


def _fvcore_count(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    module.eval()
    # fvcore traces by running the module once; the values are irrelevant to the count, and one
    # thread is fastest for these small single-image runs (and immune to a busy machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            fca = FlopCountAnalysis(module, inputs)
            fca.unsupported_ops_warnings(False)
            fca.uncalled_modules_warnings(False)
            fca.tracer_warnings("none")
            return int(fca.total())
    finally:
        torch.set_num_threads(threads)


def count_flops(model: nn.Module, h: int, w: int, batch: int = 1, in_channels: int = 3) -> int:
    """Multiply-adds of one forward pass at ``batch x in_channels x h x w``."""
    return _fvcore_count(model, (torch.zeros(batch, in_channels, h, w),))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@lru_cache(maxsize=100_000)
def op_flops(sig: OpSignature) -> int:
    """Multiply-adds of one operator at its signature (batch 1)."""
    op = build_op(sig.spec)
    return _fvcore_count(op, op_class(sig.type).example_inputs(sig))


def sum_op_flops(sigs: Iterable[OpSignature]) -> int:
    return sum(op_flops(s) for s in sigs)
