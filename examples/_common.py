"""Plumbing shared by the examples: flags, mean +/- std tables, outputs.

Kept free of TensorFlow so that `--help` answers at once: an example
parses its arguments with `parse_args` first and imports TensorFlow after.
"""

import argparse
import json
import os

import numpy as np


def parse_args(
    description: str,
    argv=None,
    *,
    learning_rate: float,
    seeds: tuple,
    steps: int,
    output_dir: str,
    add_arguments=None,
) -> argparse.Namespace:
    """Parses the flags every example shares, plus its own.

    Shared flags: `--learning-rate`, `--seeds` (one or more ints),
    `--steps` (training steps) and `--output-dir`; `add_arguments(parser)`
    adds the example's own. `--help` shows every default.
    """
    parser = argparse.ArgumentParser(
        description=description.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--learning-rate", type=float, default=learning_rate, help="lr")
    add("--seeds", type=int, nargs="+", default=list(seeds), help="a run each")
    add("--steps", type=int, default=steps, help="training steps")
    add("--output-dir", default=output_dir, help="results and figures")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1. Received: steps={args.steps}")
    return args


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for one value)."""
    values = np.asarray(values, dtype=np.float64)
    std = values.std(ddof=1) if values.size > 1 else 0.0
    return float(values.mean()), float(std)


def format_mean_std(values, digits: int = 1) -> str:
    """`"mean +/- std"` over seeds, e.g. `"134.2 +/- 12.0"`."""
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} +/- {std:.{digits}f}"


def markdown_table(header: list, rows: list) -> str:
    """A GitHub markdown table from a header and rows of cells."""
    lines = ["| " + " | ".join(map(str, header)) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_results(output_dir: str, markdown: str, payload: dict) -> None:
    """Writes `results.md` and `results.json` into `output_dir`."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "results.md"), "w") as file:
        file.write(markdown)
    with open(os.path.join(output_dir, "results.json"), "w") as file:
        json.dump(payload, file, indent=1)


def pyplot():
    """matplotlib's pyplot with the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, output_dir: str, name: str) -> str:
    """Saves and closes `figure` as `output_dir/name`; returns the path."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, name)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot().close(figure)
    return path


def scatter_grid(panels, output_dir, name, limit=1.15, marks=None) -> str:
    """A grid of 2-D scatter plots, saved as `output_dir/name`.

    `panels`: rows of `(title, points (n, 2), colors or None)`; `marks`:
    optional points `(m, 2)` drawn large in green under every panel.
    """
    plt = pyplot()
    rows, cols = len(panels), max(len(row) for row in panels)
    figure, axes = plt.subplots(
        rows, cols, figsize=(1.8 * cols, 1.8 * rows), squeeze=False
    )
    for ax_row, row in zip(axes, panels, strict=True):
        for ax, (title, points, colors) in zip(ax_row, row, strict=False):
            if marks is not None:
                ax.scatter(*marks.T, s=30, c="g", alpha=0.4)
            cmap = None if colors is None else "tab10"
            ax.scatter(*points.T, c=colors, cmap=cmap, s=2, alpha=0.5)
            ax.set(xlim=(-limit, limit), ylim=(-limit, limit))
            ax.set(xticks=[], yticks=[], aspect="equal")
            ax.set_title(title, fontsize=7)
    return save_figure(figure, output_dir, name)


def curves(panels, output_dir, name, xlabel="step") -> str:
    """Mean +/- std curves over seeds, one subplot per panel.

    `panels`: list of `(title, ylabel, {label: (steps, values)})` where
    `values` is `(num_seeds, len(steps))`.
    """
    plt = pyplot()
    figure, axes = plt.subplots(
        1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False
    )
    for ax, (title, ylabel, lines) in zip(axes[0], panels, strict=True):
        for label, (steps, values) in lines.items():
            values = np.asarray(values, dtype=np.float64)
            ax.errorbar(steps, values.mean(0), values.std(0), label=label)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.legend(fontsize=7)
    return save_figure(figure, output_dir, name)
