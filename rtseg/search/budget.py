"""Budget checks around the search: feasibility up front, and landing the decoded arch in the band.

The relaxed search keeps E[latency] inside the target band, and E[latency] equals the decoded
arch's predicted latency once every decision is one-hot. When the search stops earlier (epoch limit,
``--no-shrink``), the argmax arch can miss the band; :func:`fit_to_budget` then changes as few, and as
unlikely-to-matter, decisions as possible: each greedy move is the single decision change with the
best latency moved per unit of log-probability given up. Whether it fired, and how many changes it
made, is recorded in the search log: it is a visible repair, not a silent one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import torch

from rtseg.arch import Arch
from rtseg.errors import RtsegError
from rtseg.latency.lut import ArchCost, Pricer
from rtseg.spaces import SearchSpace, get_space


@dataclass
class FitResult:
    arch: Arch
    cost: ArchCost
    changes: list[str] = field(default_factory=list)


def check_feasible(space: str | SearchSpace, h: int, w: int, num_classes: int, target_ms: float, pricer: Pricer) -> ArchCost:
    """Refuse a budget below the cheapest arch of the space (a name, or a space with its size options)
    as ``pricer`` (:meth:`rtseg.latency.lut.LUT.pricer`) prices it; the message names the cheapest latency."""
    if isinstance(space, str):
        space = get_space(space)
    space_name = space.name
    cheapest = space.cheapest_arch(pricer.cost, h, w, num_classes)
    c = pricer.price(cheapest, h, w)
    if target_ms < c.latency_ms:
        raise RtsegError(
            f"latency budget {target_ms:.3f} ms is infeasible: the cheapest {space_name} arch at {h}x{w} is predicted at "
            f"{c.latency_ms:.3f} ms on this LUT; raise --latency-ms to at least that"
        )
    return c


def fit_to_budget(supernet, h: int, w: int, target_ms: float, flops_budget: float | None, pricer: Pricer,
                  low: float = 0.8, max_moves: int = 200) -> FitResult:
    """Start from the argmax arch and move it into ``[low * T, T]`` (and under the FLOPs budget), each
    candidate priced by ``pricer`` (give it a FLOPs counter when there is a FLOPs budget)."""
    with torch.no_grad():
        logp = {d.name: torch.log(supernet.probs(d.name).clamp_min(1e-9)).tolist() for d in supernet.decisions()}
    choices = supernet.argmax_choices()

    def evaluate(ch: dict[str, int]) -> tuple[Arch, ArchCost]:
        a = supernet.arch_from_choices(ch)
        return a, pricer.price(a, h, w)

    def over(c: ArchCost) -> bool:
        return c.latency_ms > target_ms or (flops_budget is not None and c.flops > flops_budget)

    arch, cost = evaluate(choices)
    changes: list[str] = []
    for _ in range(max_moves):
        too_big, too_small = over(cost), cost.latency_ms < low * target_ms
        if not too_big and not too_small:
            break
        best = None
        for dec in supernet.active_decisions():
            cur = choices[dec.name]
            for j in range(len(dec.choices)):
                if j == cur:
                    continue
                trial = dict(choices)
                trial[dec.name] = j
                a2, c2 = evaluate(trial)
                loss = max(logp[dec.name][cur] - logp[dec.name][j], 0.0) + 1e-3
                if too_big:
                    gain = (cost.latency_ms - c2.latency_ms) / target_ms
                    if flops_budget is not None and cost.flops > flops_budget:
                        gain += (cost.flops - c2.flops) / flops_budget
                    if gain <= 0:
                        continue
                else:
                    if over(c2):
                        continue
                    gain = (c2.latency_ms - cost.latency_ms) / target_ms
                    if gain <= 0:
                        continue
                score = gain / loss
                if best is None or score > best[0]:
                    best = (score, dec.name, j, a2, c2)
        if best is None:
            break
        _, name, j, arch, cost = best
        dec_choices = supernet.decisions_by_name()[name].choices
        changes.append(f"{name}: {dec_choices[choices[name]]} -> {dec_choices[j]}")
        choices[name] = j
    return FitResult(arch, cost, changes)

