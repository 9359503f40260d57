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


def saved_model_dir(name: str) -> str:
    """The committed `saved_models/<name>/` of this repository."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(root, "saved_models", name)


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """`--export-dir` or (exclusive) `--update-saved-models`."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--export-dir",
        default=None,
        help="where the best model goes ('' skips; None: OUTPUT_DIR/export)",
    )
    group.add_argument(
        "--update-saved-models",
        action="store_true",
        help="export to the committed saved_models/ of the repository",
    )


def resolve_export_dir(args: argparse.Namespace, name: str) -> str:
    """Sets and returns `args.export_dir` after `add_export_arguments`.

    `--update-saved-models`: `saved_models/<name>/`; no `--export-dir`:
    `<output_dir>/export`; `--export-dir ''`: `''` (no export).
    """
    if args.update_saved_models:
        args.export_dir = saved_model_dir(name)
    elif args.export_dir is None:
        args.export_dir = os.path.join(args.output_dir, "export")
    return args.export_dir


def export_model(model, export_dir: str, info: dict, name: str = "") -> list:
    """Writes a functional Keras model in two forms, plus what made it.

    Into `export_dir`: `<name>.keras` (an uncompiled copy sharing the
    weights: it loads without the optimizer or a training loss),
    `serving/` (a TensorFlow SavedModel, `model.export`) and
    `model_info.json` (`info`). `name` defaults to the model's name.
    Returns the three paths.
    """
    import keras

    os.makedirs(export_dir, exist_ok=True)
    copy = keras.Model(model.inputs, model.outputs, name=model.name)
    keras_path = os.path.join(export_dir, f"{name or model.name}.keras")
    copy.save(keras_path)
    serving_path = os.path.join(export_dir, "serving")
    model.export(serving_path, verbose=False)
    info_path = os.path.join(export_dir, "model_info.json")
    with open(info_path, "w") as file:
        json.dump(info, file, indent=2, default=str)
    return [keras_path, serving_path, info_path]


def bars(panels, output_dir, name, hlines=None, xlabel="", zoom=False) -> str:
    """Grouped bars of mean +/- std over seeds, one subplot per panel.

    `panels`: list of `(title, ylabel, groups, {label: values})` where
    `values` is `(num_seeds, len(groups))` (NaN for a missing or diverged
    run); each label is one bar per group. `hlines`: optional
    `{label: y}` drawn as dashed lines on every panel (e.g. bounds).
    `zoom=True` limits each y axis to the error bars (e.g. recalls near
    100 %), where bars otherwise start at 0.
    """
    plt = pyplot()
    figure, axes = plt.subplots(
        1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False
    )
    for ax, (title, ylabel, groups, series) in zip(
        axes[0], panels, strict=True
    ):
        width, ends = 0.8 / max(len(series), 1), []
        for i, (label, values) in enumerate(series.items()):
            values = np.asarray(values, dtype=np.float64)
            finite = [
                v[np.isfinite(v)] for v in values.reshape(-1, len(groups)).T
            ]
            stats = [mean_std(v) if v.size else (np.nan, 0.0) for v in finite]
            x = np.arange(len(groups)) + (i - (len(series) - 1) / 2) * width
            means, stds = np.array(stats).reshape(-1, 2).T
            ax.bar(x, means, width, yerr=stds, capsize=3, label=label)
            ends += [*(means - stds), *(means + stds)]
        for (label, y), style in zip(
            (hlines or {}).items(), ("--", ":", "-."), strict=False
        ):
            ax.axhline(y, color="black", ls=style, lw=1, label=label)
        ax.set_xticks(np.arange(len(groups)), [str(g) for g in groups])
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        low, high = (
            np.nanmin(ends, initial=np.inf),
            np.nanmax(ends, initial=-np.inf),
        )
        if zoom and low <= high:
            pad = 0.3 * (high - low) or 1.0
            ax.set_ylim(low - pad, high + pad)
    axes[0, 0].legend(fontsize=7)  # the same bars and lines on every panel
    return save_figure(figure, output_dir, name)


def _groups(runs, keys) -> dict:
    """`{tuple(run[key] for key in keys): [run, ...]}`, first-seen order."""
    groups = {}
    for run in runs:
        groups.setdefault(tuple(run[key] for key in keys), []).append(run)
    return groups


def grouped_table(runs, keys, columns) -> tuple[list, list]:
    """One row per group of `runs` sharing `keys`: mean +/- std columns.

    `runs`: dicts; `columns`: `(title, key, scale, digits)`, each cell the
    `format_mean_std` of `scale * run[key]` over the group's runs holding
    `key` (`"-"` if none). A last column, `runs`, counts the runs holding
    the first column's key (e.g. the finite ones) out of the group's.
    Returns `(header, rows)` for `markdown_table`.
    """
    header = list(keys) + [column[0] for column in columns] + ["runs"]
    rows = []
    for key, group in _groups(runs, keys).items():
        row = [
            f"{value:g}" if isinstance(value, float) else value for value in key
        ]
        for _, name, scale, digits in columns:
            values = [scale * run[name] for run in group if name in run]
            row.append(format_mean_std(values, digits) if values else "-")
        done = sum(columns[0][1] in run for run in group)
        rows.append(row + [f"{done}/{len(group)}"])
    return header, rows


def run_bars(runs, output_dir, name, value, panel, bar, group, **kwargs) -> str:
    """`bars` of `run[value]` over seeds: a subplot per `run[panel]`, a bar
    color per `run[bar]`, a bar group per `run[group]`.

    Runs without `value` (e.g. diverged) are left out. `kwargs`: `ylabel`
    and `scale` (of the values), and `bars`' `hlines`, `xlabel`, `zoom`.
    """
    ylabel, scale = kwargs.pop("ylabel", value), kwargs.pop("scale", 1.0)
    panels = []
    for (title,), in_panel in _groups(runs, [panel]).items():
        groups = list(_groups(in_panel, [group]))
        series = {}
        for (label,), runs_of_bar in _groups(in_panel, [bar]).items():
            by_group = _groups(runs_of_bar, [group])
            columns = [
                [
                    scale * run[value]
                    for run in by_group.get(g, [])
                    if value in run
                ]
                for g in groups
            ]
            values = np.full(
                (max(map(len, columns), default=0), len(groups)), np.nan
            )
            for j, column in enumerate(columns):
                values[: len(column), j] = column
            series[label] = values
        panels.append((title, ylabel, [g for (g,) in groups], series))
    return bars(panels, output_dir, name, **kwargs)
