"""The PNGs a trial leaves behind: learning curves and propagation at init versus the end."""

from __future__ import annotations

from pathlib import Path

from residual.propagation import plot_propagation

from .contract import LEARNING_CURVE, PROPAGATION, PROPAGATION_PLOT, read_metrics
from .directory import load_propagation


def render_trial_plots(trial_dir: str | Path) -> list[Path]:
    """Draw both plots from a trial directory's JSON files (also for a trial stopped early,
    which never reached its own end); returns the PNGs written."""
    out = Path(trial_dir)
    written = []
    history = read_metrics(out)
    if history:
        written.append(plot_learning_curve(history, out / LEARNING_CURVE))
    if (out / PROPAGATION).exists():
        profiles = load_propagation(out)
        first, last = min(profiles), max(profiles)
        chosen = {"init": profiles[first]}
        if last != first:
            chosen[f"epoch {last}"] = profiles[last]
        written.append(plot_propagation(chosen, out / PROPAGATION_PLOT,
                                        title="propagation (Eq. 4, 5, 8)"))
    return written


def plot_learning_curve(history: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [m["epoch"] for m in history]
    fig, (errors, loss) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax in (errors, loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
    for key, style in (("train_error", "-"), ("val_error", "--"), ("test_error", ":")):
        points = [(m["epoch"], 100 * m[key]) for m in history if key in m]
        if points:  # the test error is measured at the end only
            errors.plot(*zip(*points), style, label=key, marker=".")
    errors.set_xlabel("epoch")
    errors.set_ylabel("error (%)")
    errors.legend()
    errors.grid(alpha=0.3)
    loss.plot(epochs, [m["train_loss"] for m in history], marker=".")
    loss.set_yscale("log")
    loss.set_xlabel("epoch")
    loss.set_title("training loss", fontsize=10)
    loss.grid(alpha=0.3)
    # Fixed margins: tight_layout draws every tick label to measure it first, which made these
    # two plots take longer than a smoke trial's training.
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.93, wspace=0.25)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
