"""``curve.png`` of a training run: the loss and the validation mIoU as training goes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rtseg.io import atomic_save


def plot_curve(history: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Training loss (per logged step, by fractional epoch) and validation mIoU per epoch, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    xs, ys = [], []
    for rec in history:
        for frac, loss in rec.get("loss_curve", []):
            xs.append(rec["epoch"] - 1 + frac)
            ys.append(loss)
    if xs:
        ax1.plot(xs, ys, lw=1, color="tab:blue", alpha=0.8)
    ax1.plot([r["epoch"] for r in history], [r["train_loss"] for r in history], "o-", color="tab:blue", label="epoch mean")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss")
    ax1.grid(alpha=0.3)
    ax1.legend()
    ep = [r["epoch"] for r in history if r.get("val")]
    mi = [100 * r["val"]["miou"] for r in history if r.get("val")]
    ax2.plot(ep, mi, "o-", color="tab:green")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation mIoU (%)")
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=110)

    try:
        return atomic_save(path, write)
    finally:
        plt.close(fig)
