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


def _layer_label(sig: Any) -> str:
    """Resolution, width and dilation of one operator, as short as a bar's label allows."""
    params = dict(sig.spec.params)
    spatial = int(params.get("spatial", 1))
    res = f"{sig.h // spatial}x{sig.w // spatial}"
    width = (f"{params['c3x1']}/{params['c1x3']}" if "c3x1" in params else str(params.get("width", sig.spec.c_out)))
    dil = f" d{params['dilation']}" if int(params.get("dilation", 1)) != 1 else ""
    return f"{sig.spec.type} {res} c{width}{dil}"


def _layer_color(sig: Any) -> str:
    params = dict(sig.spec.params)
    if sig.spec.type == "stdc_block":
        return "tab:purple" if int(params.get("spatial", 1)) == 1 else "plum"
    if int(params.get("dilation", 1)) != 1:
        return "tab:orange"
    return "tab:green" if int(params.get("spatial", 1)) != 1 else "tab:blue"


def plot_layers(archs: dict[str, Any], lut: Any, path: Path, title: str = "") -> Path:
    """Per layer of each arch (one panel each, same scale): its LUT latency as a bar, labelled with
    the layer's resolution (after any half-resolution stride inside the block), widths and dilation.
    Where two nets of one latency budget spend it differently (the searched pick beside the
    hand-designed net scaled to the same budget) is then visible at a glance. Every arch must be of
    the LUT's space."""
    from rtseg.io import atomic_save

    plt = _plt()
    h, w = lut.input_hw
    preds = {name: lut.predict(arch, h, w) for name, arch in archs.items()}
    longest = max(len(p.per_op) for p in preds.values())
    top = max(ms for p in preds.values() for _, ms in p.per_op)
    fig, axes = plt.subplots(len(archs), 1, figsize=(max(8.0, 0.42 * longest), 3.4 * len(archs)), squeeze=False)
    for ax, (name, pred) in zip(axes[:, 0], preds.items()):
        ms = [t for _, t in pred.per_op]
        colors = [_layer_color(sig) for sig, _ in pred.per_op]
        ax.bar(range(len(ms)), ms, color=colors)
        ax.set_xticks(range(len(ms)))
        ax.set_xticklabels([_layer_label(sig) for sig, _ in pred.per_op], rotation=70, ha="right", fontsize=7)
        ax.set_xlim(-0.6, longest - 0.4)
        ax.set_ylim(0, 1.1 * top)
        ax.set_ylabel("LUT ms")
        ax.set_title(f"{name}: {pred.total_ms:.3f} ms predicted ({len(ms)} operators; orange: dilated, green: half resolution, "
                     "purple: STDC)",
                     fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path
