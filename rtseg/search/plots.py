"""PNG plots of a search: architecture-parameter trajectories (as the SSR paper Fig. 5) and entropy."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_search(log: list[dict[str, Any]], trajectory: list[dict[str, Any]], out: Path, target_ms: float) -> list[Path]:
    plt = _plt()
    written = []
    # entropy and expected latency per arch step (finer than per epoch) and per epoch
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.6))
    if trajectory:
        steps = [t["step"] for t in trajectory]
        ax[1].plot(steps, [t["expected_latency_ms"] for t in trajectory], label="E[latency]")
        ax[1].axhline(target_ms, color="r", ls="--", label="budget T")
        ax[1].axhspan(0.8 * target_ms, target_ms, color="g", alpha=0.1, label="[0.8T, T]")
        ax[1].set_xlabel("architecture step")
        ax[1].set_ylabel("ms")
        ax[1].legend(fontsize=8)
    ax[0].plot([r["epoch"] + 1 for r in log], [r["total_entropy"] for r in log], marker="o")
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("total architecture entropy (nats)")
    ax[0].set_title("entropy")
    ax[1].set_title("expected latency")
    fig.tight_layout()
    p = out / "entropy.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p)
    if not trajectory:  # stopped before the first architecture step: say so in the picture
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no architecture steps yet (stopped during weight warm-up)", ha="center", va="center")
        p = out / "trajectories.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        return written + [p]
    # probability trajectories of a few representative decisions
    names = list(trajectory[-1]["probs"].keys())
    picks = [n for n in names if n.endswith(".depth")]
    ds = [n for n in names if n.endswith(".ds")]
    picks += ds[:1] + ds[-1:]
    picks += [n for n in names if n.endswith(".c3x1")][-1:]
    if not picks:  # other spaces: the first and last few decisions
        picks = names[:3] + names[-2:] if len(names) > 5 else names
    fig, axes = plt.subplots(1, len(picks), figsize=(3.6 * len(picks), 3.2), squeeze=False)
    steps = [t["step"] for t in trajectory]
    for ax, name in zip(axes[0], picks):
        k = len(trajectory[-1]["probs"][name])
        for i in range(k):
            ax.plot(steps, [t["probs"][name][i] for t in trajectory], lw=1)
        ax.set_title(name, fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("architecture step")
    axes[0][0].set_ylabel("probability")
    fig.tight_layout()
    p = out / "trajectories.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p)
    return written
