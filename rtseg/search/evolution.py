"""Evolution over a space's discrete decisions inside a latency band: the search half shared by the
one-shot search (archs scored by a supernet's weights) and the proxy search (archs scored by a short
training run).

A genome is a candidate index per decision of the space's supernet (``SSRSupernet.decisions_by_name``);
every draw, mutation and crossover is kept only if the LUT predicts its latency inside the band, so the
evolution never spends an evaluation on an arch that misses the budget. The loop follows the genetic
search of Guo et al., "Single Path One-Shot Neural Architecture Search with Uniform Sampling", ECCV 2020,
sec. 3.4: the best ``parents`` of the population breed half mutations (each decision redrawn with
probability ``mutate_prob``) and half crossovers (each decision from either parent); the population
keeps the best ``population`` archs scored so far. Seed archs (a hand-designed net scaled to the
budget, say) join the first population, moved into the band by small mutations when they miss it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Sequence

from rtseg.arch import Arch
from rtseg.errors import RtsegError
from rtseg.io import atomic_save, atomic_write_json, read_json
from rtseg.reporting import TaskBar
from rtseg.search.common import SearchSettings


class BandSampler:
    """Uniform draws, mutations and crossovers of choice dicts, kept inside the latency band and under
    the FLOPs budget. Prices come from the search's :class:`~rtseg.search.common.SearchContext` (LUT
    latency and FLOPs), memoized per genome: the evolution asks about the same genomes often."""

    def __init__(self, supernet: Any, ctx: Any, low_ms: float, high_ms: float, rng: random.Random) -> None:
        self.decisions = supernet.decisions_by_name()
        self.supernet, self.ctx = supernet, ctx
        self.low, self.high, self.rng = low_ms, high_ms, rng
        self.flops_max = ctx.flops_budget
        self._prices: dict[tuple[int, ...], Any] = {}

    def arch(self, choices: dict[str, int]) -> Arch:
        return self.supernet.arch_from_choices(choices)

    def price(self, choices: dict[str, int]) -> Any:
        key = tuple(choices[n] for n in self.decisions)
        if key not in self._prices:
            self._prices[key] = self.ctx.price(self.arch(choices))
        return self._prices[key]

    def latency(self, choices: dict[str, int]) -> float:
        return self.price(choices).latency_ms

    def flops(self, choices: dict[str, int]) -> float:
        return self.price(choices).flops

    def in_band(self, choices: dict[str, int]) -> bool:
        """Inside the latency band and under the FLOPs budget."""
        c = self.price(choices)
        return self.low <= c.latency_ms <= self.high and (self.flops_max is None or c.flops <= self.flops_max)

    def uniform(self, tries: int = 4000) -> dict[str, int]:
        for _ in range(tries):
            c = {n: self.rng.randrange(len(d.choices)) for n, d in self.decisions.items()}
            if self.in_band(c):
                return c
        for _ in range(8):  # a narrow band that uniform draws rarely hit: walk draws into it
            c = self.toward({n: self.rng.randrange(len(d.choices)) for n, d in self.decisions.items()}, self.low, self.high)
            if c is not None:
                return c
        raise RtsegError(f"no arch of the space found in [{self.low:.3f}, {self.high:.3f}] ms"
                         + (f" under {self.flops_max / 1e9:g} G FLOPs" if self.flops_max else "")
                         + f" after {tries} draws; widen the band or choose another --latency-ms")

    def toward(self, choices: dict[str, int], low: float, high: float, steps: int = 200) -> dict[str, int] | None:
        """Walk ``choices`` into ``[low, high]`` ms (under the FLOPs budget) by single-decision changes,
        each kept when it brings the arch nearer that range: random changes while they find one, the
        best change of all when they do not (a descent by random changes alone stalls in a corner).
        How paths of any budget are drawn (the one-shot supernet trains across budgets), and how a seed
        far from the band is brought in; None when no change brings it nearer."""

        def distance(c: dict[str, int]) -> float:
            p = self.price(c)
            d = max(0.0, low - p.latency_ms, p.latency_ms - high)
            if self.flops_max is not None and p.flops > self.flops_max:
                d += (p.flops - self.flops_max) / self.flops_max * high
            return d

        def changed(c: dict[str, int], name: str, index: int) -> dict[str, int]:
            trial = dict(c)
            trial[name] = index
            return trial

        cur, dist = dict(choices), distance(choices)
        names = list(self.decisions)
        for _ in range(steps):
            if dist == 0.0:
                return cur
            for _ in range(30):
                name = self.rng.choice(names)
                trial = changed(cur, name, self.rng.randrange(len(self.decisions[name].choices)))
                if distance(trial) < dist:
                    break
            else:
                trial = min((changed(cur, n, j) for n in names for j in range(len(self.decisions[n].choices))), key=distance)
            d = distance(trial)
            if d >= dist:
                return None
            cur, dist = trial, d
        return cur if dist == 0.0 else None

    def mutate(self, parent: dict[str, int], prob: float, tries: int = 200) -> dict[str, int] | None:
        for _ in range(tries):
            c = {n: (self.rng.randrange(len(self.decisions[n].choices)) if self.rng.random() < prob else i) for n, i in parent.items()}
            if c != parent and self.in_band(c):
                return c
        return None

    def crossover(self, a: dict[str, int], b: dict[str, int], tries: int = 200) -> dict[str, int] | None:
        for _ in range(tries):
            c = {n: (a[n] if self.rng.random() < 0.5 else b[n]) for n in a}
            if self.in_band(c):
                return c
        return None

    def into_band(self, seed: dict[str, int], mutate_prob: float) -> dict[str, int] | None:
        """A seed arch as it is when it fits, else moved in by small changes (None when none brings it in)."""
        if self.in_band(seed):
            return seed
        return self.mutate(seed, mutate_prob / 2)


def key_of(arch: Arch) -> str:
    """A stable identity of an arch's genotype (what evolution memoizes scores by)."""
    return json.dumps(arch.genotype, sort_keys=True)


@dataclass
class EvolutionConfig(SearchSettings):
    """What every band-constrained evolution search adds to the shared settings: the band and the
    evolution's sizes. Each search's config adds how it scores an arch (and may change the defaults)."""

    band: tuple[float, float] = (0.9, 1.0)  # fractions of T every trained and evolved arch keeps to
    population: int = 16
    parents: int = 6
    evaluations: int = 128  # archs scored in all
    mutate_prob: float = 0.1


@dataclass
class EvolutionState:
    """Everything scored so far (``key -> record``), the current population (keys) and the generation."""

    scored: dict[str, dict[str, Any]] = field(default_factory=dict)
    population: list[str] = field(default_factory=list)
    generation: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"scored": self.scored, "population": self.population, "generation": self.generation}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EvolutionState":
        return cls(d["scored"], d["population"], d["generation"])

    def best(self) -> dict[str, Any]:
        return max(self.scored.values(), key=lambda r: r["score"])


#: Scores a batch of genomes (a list, so a scorer can run them in parallel): one float per genome.
Scorer = Callable[[Sequence[dict[str, int]]], list[float]]


#: Generations in a row that breed no unscored arch before an evolution stops short of its evaluations:
#: a small population at a low mutation rate may breed only archs it has scored for a generation or two.
STALLED_GENERATIONS = 20


def evolve(state: EvolutionState, sampler: BandSampler, score: Scorer, *, population: int, parents: int,
           evaluations: int, mutate_prob: float, seeds: Sequence[dict[str, int] | tuple[dict[str, int], str]] = (),
           save: Callable[[], None] = lambda: None, bar: TaskBar | None = None, as_is: Collection[str] = ()) -> EvolutionState:
    """Run the evolution until ``evaluations`` archs are scored (resumable: ``state`` carries on). Seeds
    are moved into the band where they miss it, but for those of an origin in ``as_is``."""

    def add(batch: list[tuple[dict[str, int], str]]) -> list[str]:
        """Score the batch's archs not scored yet (within the evaluation budget); the batch's scored keys."""
        keys = [key_of(sampler.arch(choices)) for choices, _ in batch]
        fresh: dict[str, tuple[dict[str, int], str]] = {}
        for key, item in zip(keys, batch):
            if key not in state.scored and key not in fresh:
                fresh[key] = item
        fresh = dict(list(fresh.items())[: max(0, evaluations - len(state.scored))])
        scores = score([choices for choices, _ in fresh.values()]) if fresh else []
        for (key, (choices, origin)), s in zip(fresh.items(), scores):
            state.scored[key] = {"choices": choices, "score": s, "origin": origin, "generation": state.generation,
                                 "predicted_latency_ms": sampler.latency(choices), "flops": sampler.flops(choices)}
        if bar is not None and state.scored:
            bar.update(completed=len(state.scored), info=f"best {state.best()['score']:.3f}")
        return [k for k in keys if k in state.scored]

    if not state.population:
        first = []
        for seed in seeds:
            seed, origin = seed if isinstance(seed, tuple) else (seed, "seed")
            moved = seed if origin in as_is else sampler.into_band(seed, mutate_prob)
            if moved is None:
                raise RtsegError(f"a seed arch's predicted latency is {sampler.latency(seed):.3f} ms, outside "
                                 f"[{sampler.low:.3f}, {sampler.high:.3f}] ms, and small changes do not bring it in; "
                                 f"scale it to the budget first (rtseg arch scale FAMILY --latency-ms T)")
            first.append((moved, origin))
        while len(first) < population:
            try:
                first.append((sampler.uniform(), "random"))
            except RtsegError:  # a band uniform draws do not reach: the seeds' neighbours fill it
                kids = [sampler.mutate(c, 0.2) for c, _ in first for _ in range(2)]
                first += [(k, "mutation") for k in kids if k is not None][: population - len(first)]
                if not first or not any(k is not None for k in kids):
                    raise
                break
        state.population = add(first)
        save()
    stalled = 0  # generations in a row that bred nothing new: one alone is chance, many mean the band is exhausted
    while len(state.scored) < evaluations and stalled < STALLED_GENERATIONS:
        state.generation += 1
        ranked = sorted(set(state.population), key=lambda k: -state.scored[k]["score"])
        pool = [state.scored[k]["choices"] for k in ranked[:parents]]
        children = []
        for i in range(population):
            if i % 2 == 0 or len(pool) < 2:
                child, origin = sampler.mutate(sampler.rng.choice(pool), mutate_prob), "mutation"
            else:
                a, b = sampler.rng.sample(pool, 2)
                child, origin = sampler.crossover(a, b), "crossover"
            if child is not None:
                children.append((child, origin))
        before = len(state.scored)
        state.population = sorted(set(state.population + add(children)), key=lambda k: -state.scored[k]["score"])[:population]
        save()
        stalled = stalled + 1 if len(state.scored) == before else 0
    return state


def ranked_for_pick(state: EvolutionState) -> list[dict[str, Any]]:
    """Scored archs in the order the pick considers them: those the final round retrained, by that
    score, ahead of the rest by their proxy score (scores of two fidelities are not compared)."""
    final = sorted((r for r in state.scored.values() if "final_score" in r), key=lambda r: -r["final_score"])
    return final + sorted((r for r in state.scored.values() if "final_score" not in r), key=lambda r: -r["score"])


def fit_walk(sampler: BandSampler, choices: dict[str, int], low: float, high: float, steps: int = 6) -> dict[str, int] | None:
    """The arch nearest ``choices`` whose predicted latency lies in ``[low, high]`` (and under the FLOPs
    budget), by whole-space single-decision steps: each step takes the change that lands in the range
    nearest its middle, or, when none does, the one that comes nearest to it. Deterministic, and small:
    it moves a pick to the budget as measured without turning it into another arch."""
    mid = (low + high) / 2

    def miss(c: dict[str, int]) -> float:
        p = sampler.price(c)
        if sampler.flops_max is not None and p.flops > sampler.flops_max:
            return float("inf")
        return max(0.0, low - p.latency_ms, p.latency_ms - high)

    cur = dict(choices)
    for _ in range(steps):
        if miss(cur) == 0.0:
            return cur
        trials = [{**cur, n: j} for n, d in sampler.decisions.items() for j in range(len(d.choices)) if j != cur[n]]
        landed = [t for t in trials if miss(t) == 0.0]
        nxt = (min(landed, key=lambda t: abs(sampler.latency(t) - mid)) if landed else min(trials, key=miss)) if trials else cur
        if not landed and miss(nxt) >= miss(cur):
            return None
        cur = nxt
    return cur if miss(cur) == 0.0 else None


def choose_measured(ctx: Any, state: EvolutionState, sampler: BandSampler, finalists: int = 4, fit_low: float = 0.95,
                    say: Callable[[str], None] = lambda _: None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The pick, with the budget as measured.

    1. The ``finalists`` best archs (:func:`ranked_for_pick`) are measured on the LUT's own runtime in
       interleaved rounds.
    2. When the best-ranked one measures outside ``[fit_low T, T]``, its own measured / predicted
       factor says where the LUT's line misses it, and :func:`fit_walk` moves it by the fewest
       decisions to a predicted latency that meets the band at that factor. The walked arch is measured
       beside it and kept when it fits T and uses more of it (or fits where its parent did not); up to
       three walks, each with the factor just measured.
    3. When no walk brings it under T, the best-ranked finalist that fits T as measured, walked up
       the same way when it uses less than ``fit_low T``.
    4. When nothing fits T even then, the fastest measured arch, said in one line.

    Returns the record (a walked arch: its parent's record with new ``choices`` and ``fitted_from``)
    and its measured figures (None when this machine is not the LUT's device: then the best arch
    wins, as priced by the LUT)."""
    from rtseg.search.common import lut_runtime, measurable_here, measure_archs

    ranked = ranked_for_pick(state)
    if measurable_here(ctx.lut) is not None or not ctx.cfg.verify_latency:
        return ranked[0], None
    target = ctx.cfg.latency_ms
    group = ranked[: max(1, finalists)]
    ms = measure_archs(ctx.lut, [sampler.arch(r["choices"]) for r in group], seed=ctx.cfg.seed) or []
    measured = list(zip(group, ms))
    rows = [{"score": r["score"], **({"final_score": r["final_score"]} if "final_score" in r else {}), "origin": r["origin"],
             "predicted_latency_ms": sampler.latency(r["choices"]), "measured_latency_ms": m, "measured_over_target": m / target}
            for r, m in measured]
    walks: list[dict[str, Any]] = []

    def walk(rec: dict[str, Any], ms: float, seed: int) -> tuple[dict[str, Any], float]:
        """Up to three walks of ``rec`` toward [fit_low T, T] as measured; the record and its figure after them."""
        factor = ms / sampler.latency(rec["choices"])
        for attempt in range(3):
            if fit_low * target <= ms <= target:
                break
            walked = fit_walk(sampler, rec["choices"], (fit_low + 0.015) * target / factor, 0.985 * target / factor)
            if walked is None or walked == rec["choices"]:
                walks.append({"origin": rec["origin"], "note": "no small change meets the band at the measured factor"})
                break
            m_now, m_walked = measure_archs(ctx.lut, [sampler.arch(rec["choices"]), sampler.arch(walked)], seed=seed + attempt) or []
            walks.append({"origin": rec["origin"], "changed": sorted(n for n in walked if walked[n] != rec["choices"][n]),
                          "predicted_latency_ms": sampler.latency(walked), "measured_latency_ms": m_walked, "parent_measured_ms": m_now})
            factor = m_walked / sampler.latency(walked)  # the next walk aims with the factor of the region just reached
            if m_walked <= target and (m_now > target or m_walked > m_now):
                walks[-1]["kept"] = True
                parent = rec.get("fitted_from") or {"origin": rec["origin"], "choices": rec["choices"]}
                origin = rec["origin"] if rec["origin"].endswith("(fitted)") else f"{rec['origin']} (fitted)"
                rec, ms = {**rec, "choices": walked, "origin": origin, "fitted_from": parent}, m_walked
            else:
                ms = (ms + m_now) / 2  # the parent, measured twice: both figures count
        return rec, ms

    # the best-ranked finalist first, walked down when it measures over T; else the best that fits, walked up
    i = 0
    best, ms_best = walk(*measured[0], seed=ctx.cfg.seed + 10)
    if ms_best > target:
        fitting = [j for j, (_, m) in enumerate(measured) if m <= target]
        if fitting:
            i = fitting[0]
            best, ms_best = walk(*measured[i], seed=ctx.cfg.seed + 20)
    note = None
    if ms_best > target:
        j = min(range(len(measured)), key=lambda k: measured[k][1])
        if measured[j][1] < ms_best:
            best, ms_best = measured[j]
        note = (f"no finalist fits T = {target:.3f} ms as measured on {ctx.lut.backend} (fastest {ms_best:.3f} ms): picked the "
                "fastest; lower the band (--band-low) or profile the LUT again on an idle machine")
        say(f"[yellow]warning:[/] {note}")
    out = {"measured_latency_ms": ms_best, "measured_over_target": ms_best / target, "measured_backend": ctx.lut.backend,
           "measured_device": lut_runtime(ctx.lut)["lut_device_name"], "finalists": rows, "finalist_picked": i,
           "fit_walks": walks}
    if note:
        out["measured_note"] = note
    return best, out


def write_evolution(path: str | Path, state: EvolutionState, sampler: BandSampler) -> None:
    """Every scored arch, as ``evolution.json`` records: key, arch, choices, score, origin, generation."""
    atomic_write_json(path, [{"key": k, "arch": sampler.arch(v["choices"]).to_dict(), **v} for k, v in state.scored.items()])


def top_archs(evolution_json: str | Path, k: int) -> list[Arch]:
    """The ``k`` best-scored archs of a finished evolution (its ``evolution.json``), best first: the
    finalists one search hands to another (one-shot finalists seeding a proxy search, say)."""
    rows = read_json(evolution_json, "evolution record")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "arch" in r and "score" in r for r in rows):
        raise RtsegError(f"{evolution_json} is not an evolution record (a list of scored archs)")
    return [Arch.from_dict(r["arch"]) for r in sorted(rows, key=lambda r: -r["score"])[:k]]


def rng_to_json(rng: random.Random) -> list[Any]:
    """A :class:`random.Random`'s state as JSON (a resumed evolution draws what it would have drawn)."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def rng_from_json(rng: random.Random, state: list[Any]) -> None:
    rng.setstate((state[0], tuple(state[1]), state[2]))


def plot_evolution(scored: list[dict[str, Any]], path: Path, target_ms: float, band: tuple[float, float],
                   ylabel: str = "score (mIoU, %)") -> None:
    """The score of every scored arch against its predicted latency, coloured by generation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=120)
    sc = ax.scatter([r["predicted_latency_ms"] for r in scored], [100 * r["score"] for r in scored],
                    c=[r["generation"] for r in scored], cmap="viridis", s=18)
    best = max(scored, key=lambda r: r["score"])
    ax.scatter([best["predicted_latency_ms"]], [100 * best["score"]], marker="*", s=200, color="tab:red", label="chosen")
    for f in band:
        ax.axvline(f * target_ms, color="k", lw=0.8, ls="--")
    fig.colorbar(sc, ax=ax, label="generation")
    ax.set_xlabel("LUT-predicted latency (ms)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"evolution, T = {target_ms:.2f} ms (band dashed)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


__all__ = ["BandSampler", "choose_measured", "fit_walk", "ranked_for_pick", "EvolutionConfig", "EvolutionState", "Scorer", "evolve", "key_of", "plot_evolution", "top_archs", "write_evolution", "rng_to_json", "rng_from_json"]
