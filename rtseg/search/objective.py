"""The terms of the architecture loss, and the shrinking rule.

``L_arch = CE(split B) + latency_weight * budget_penalty(E[lat] / T)
                       + flops_weight * relu(E[FLOPs] / F - 1)
                       + sum_level rho_level * R_level``

Latency budget (why a band, not a soft penalty): a soft penalty ``lambda * E[lat]`` (CAS eq. 6) only
says "cheaper is better"; its optimum depends on lambda and the data, and it routinely undershoots a
budget the user wanted to spend on accuracy. A one-sided hinge on ``E[lat] - T`` lets the search drift
anywhere under T. rtseg uses a two-sided hinge on the ratio ``r = E[lat] / T`` that is zero inside a
target band ``[low, high]`` (default ``[0.85, 0.97]``) and linear outside it, so inside the band the
cross-entropy alone chooses, and the decoded net, whose latency E[lat] converges to as the
distribution becomes one-hot, lands in ``[0.8 T, T]``. The ratio makes the weight unit-free.

Regularizers per level (Ye et al., IJCV 2022): ``ssr`` is eq. 9, ``sum_i log p_i`` per decision (averaged over
the decisions of a level, then weighted 0.15 / 0.3 / 0.3 for depth / dilation-and-spatial /
channels, eq. 10); ``entropy`` is the plain entropy minimization it is compared with (Tables 13-14);
``none`` adds nothing.
"""

from __future__ import annotations

from typing import Iterable

import torch

from rtseg.spaces.base import Decision, Supernet

DEFAULT_LEVEL_WEIGHTS = {"depth": 0.15, "dilation_spatial": 0.3, "channels": 0.3}


def budget_penalty(expected: torch.Tensor, target: float, low: float = 0.85, high: float = 0.97) -> torch.Tensor:
    r = expected / target
    return torch.relu(r - high) + torch.relu(low - r)


def flops_penalty(expected: torch.Tensor, budget: float) -> torch.Tensor:
    return torch.relu(expected / budget - 1.0)


def _alive_probs(supernet: Supernet, dec: Decision) -> torch.Tensor:
    p = supernet.probs(dec.name)
    return p[dec.alive]


def level_regularizer(supernet: Supernet, decisions: Iterable[Decision], kind: str, level_weights: dict[str, float]) -> torch.Tensor:
    """Weighted per-level SSR (``sum log p``) or entropy loss over decisions with >1 candidate left."""
    per_level: dict[str, list[torch.Tensor]] = {}
    for dec in decisions:
        if dec.n_alive <= 1:
            continue
        p = _alive_probs(supernet, dec).clamp_min(1e-12)
        if kind == "ssr":
            term = torch.log(p).sum()
        elif kind == "entropy":
            term = -(p * torch.log(p)).sum()
        else:
            raise ValueError(f"unknown regularizer {kind!r}")
        per_level.setdefault(dec.level, []).append(term)
    total = torch.zeros(())
    for level, terms in per_level.items():
        total = total + level_weights.get(level, 0.3) * torch.stack(terms).mean()
    return total


def total_entropy(supernet: Supernet, decisions: Iterable[Decision]) -> float:
    """Sum of the entropies of all decisions (0 exactly when the arch is discrete)."""
    h = 0.0
    with torch.no_grad():
        for dec in decisions:
            if dec.n_alive <= 1:
                continue
            p = _alive_probs(supernet, dec).clamp_min(1e-12)
            h += float(-(p * torch.log(p)).sum())
    return h


def shrink(supernet: Supernet, decisions: list[Decision] | None = None, h: float = 0.1,
           levels: tuple[str, ...] | None = None) -> list[tuple[str, int]]:
    """Hierarchical progressive shrinking (SSR paper, eq. 11): remove every candidate whose
    probability is at most ``h`` times the best of its decision, level by level in ``levels``
    (default: the supernet's :meth:`~rtseg.spaces.Supernet.levels_to_shrink`; SSR's is depth first, so
    layers that can no longer run drop out before their own choices are considered). Each level
    re-reads the supernet's active decisions (``decisions`` is accepted for older callers and not
    needed). A supernet whose decisions depend on each other vetoes a removal through
    :meth:`~rtseg.spaces.Supernet.can_remove` (CAS: a node must keep two edges that can carry an
    operation)."""
    levels = levels or supernet.levels_to_shrink()
    removed: list[tuple[str, int]] = []
    for level in levels:
        for dec in supernet.active_decisions():
            if dec.level != level or dec.n_alive <= 1:
                continue
            with torch.no_grad():
                p = supernet.probs(dec.name)
            best = float(p.max())
            for i in range(len(dec.choices)):
                if bool(dec.alive[i]) and float(p[i]) <= h * best and dec.n_alive > 1:
                    if not supernet.can_remove(dec.name, i):
                        continue
                    supernet.remove(dec.name, i)
                    removed.append((dec.name, i))
    return removed
