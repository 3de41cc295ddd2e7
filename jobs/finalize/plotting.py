"""The report's plots, as PNG files (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the backend must be chosen before pyplot is imported
import matplotlib.pyplot as plt

import contract
from jobs.finalize.ranking import ConfigSummary, Ranking
from jobs.finalize.records import RunRecord

PLOTS_DIR = "plots"
DPI = 100


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def plot_objective(*, ranking: Ranking, path: Path) -> Path:
    """Objective per configuration: bar = mean over seeds, error bar = std, dots = the seeds' runs."""
    objective = ranking.rules.objective
    configs = ranking.configs
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(configs) + 2), 4.5))
    positions = range(len(configs))
    means = [_finite(c.stat(objective).mean) for c in configs]
    stds = [_finite(c.stat(objective).std) for c in configs]
    colors = ["#2b8cbe" if c.rank == 1 else "#a6bddb" if c.rank else "#d9d9d9" for c in configs]
    ax.bar(positions, means, yerr=stds, capsize=6, color=colors, edgecolor="black", linewidth=0.6)
    for x, config in zip(positions, configs, strict=True):
        ys = [r.metric(objective) for r in config.runs]
        ax.scatter([x] * len(ys), ys, color="black", s=14, zorder=3)
    ax.set_xticks(list(positions), [_config_label(c) for c in configs], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"{objective} (val)")
    ax.set_title(f"{objective} per configuration: mean ± std over seeds (grey: excluded)")
    return _save(fig, path)


def _config_label(config: ConfigSummary) -> str:
    prefix = f"#{config.rank} " if config.rank else "excl. "
    return prefix + config.label.replace(", ", "\n")


def plot_axis(*, ranking: Ranking, axis: str, metrics: Sequence[str], path: Path) -> Path:
    """Each metric against one axis: every successful run as a dot, the marginal mean as a line."""
    runs = [r for c in ranking.configs for r in c.runs]
    values = list(ranking.rules.axes[axis])
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        _axis_panel(ax=ax, runs=runs, axis=axis, values=values, metric=metric)
    fig.suptitle(f"metrics against {axis} (dots: runs, line: mean)")
    return _save(fig, path)


def _axis_panel(*, ax: plt.Axes, runs: Sequence[RunRecord], axis: str, values: list, metric: str) -> None:
    means = []
    for i, value in enumerate(values):
        ys = [r.metric(metric) for r in runs if r.params.get(axis) == value and math.isfinite(r.metric(metric))]
        ax.scatter([i] * len(ys), ys, s=16, color="#2b8cbe", alpha=0.8)
        means.append(sum(ys) / len(ys) if ys else math.nan)
    ax.plot(range(len(values)), means, color="black", marker="_", markersize=14)
    ax.set_xticks(range(len(values)), [str(v) for v in values])
    ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_xlabel(axis)
    ax.set_title(metric, fontsize=10)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=DPI)
    plt.close(fig)
    return path


def write_plots(*, ranking: Ranking, directory: Path) -> list[str]:
    """Write every plot under directory/plots; return their paths relative to `directory`."""
    if not ranking.configs:
        return []
    metrics = list(dict.fromkeys([*contract.FINAL_METRICS, ranking.rules.objective]))
    written = [plot_objective(ranking=ranking, path=directory / PLOTS_DIR / "objective_by_configuration.png")]
    for axis in ranking.rules.axes:
        written.append(plot_axis(ranking=ranking, axis=axis, metrics=metrics,
                                 path=directory / PLOTS_DIR / f"metrics_vs_{safe_name(axis)}.png"))
    return [str(p.relative_to(directory)) for p in written]
