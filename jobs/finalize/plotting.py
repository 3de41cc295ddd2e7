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
from jobs.finalize import pareto, search
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


NUMERIC_DISTRIBUTIONS = ("uniform", "loguniform", "int")


def plot_axis(*, ranking: Ranking, axis: str, metrics: Sequence[str], path: Path) -> Path:
    """Each metric against one axis: every successful run as a dot, the marginal mean as a line.
    An axis sampled from a numeric distribution is drawn on its own scale (log for loguniform)."""
    runs = [r for c in ranking.configs for r in c.runs]
    values = list(ranking.rules.axes[axis])
    distribution = ranking.rules.distribution(axis)
    kind = next(iter(distribution)) if distribution else None
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        if kind in NUMERIC_DISTRIBUTIONS:
            _numeric_panel(ax=ax, runs=runs, axis=axis, metric=metric, log=kind == "loguniform")
        else:
            _axis_panel(ax=ax, runs=runs, axis=axis, values=values, metric=metric)
    fig.suptitle(f"metrics against {axis} (dots: runs, line: mean)" if kind not in NUMERIC_DISTRIBUTIONS
                 else f"metrics against {axis}, sampled {kind} (dots: runs)")
    return _save(fig, path)


def _numeric_panel(*, ax: plt.Axes, runs: Sequence[RunRecord], axis: str, metric: str, log: bool) -> None:
    points = [(float(r.params[axis]), r.metric(metric)) for r in runs
              if isinstance(r.params.get(axis), (int, float)) and math.isfinite(r.metric(metric))]
    ax.scatter([x for x, _ in points], [y for _, y in points], s=16, color="#2b8cbe", alpha=0.8)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(axis)
    ax.set_title(metric, fontsize=10)


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


SEARCH_BEST, SEARCH_TRIALS, PARETO = search.PLOT_BEST, search.PLOT_TRIALS, pareto.PLOT


def plot_best_so_far(*, ranking: Ranking, trials: Sequence[search.Trial], path: Path) -> Path:
    """The best objective found so far (finished, non-stopped trials) against the trial number."""
    objective = ranking.rules.objective
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    steps = [(t.number, t.best_so_far) for t in trials if math.isfinite(t.best_so_far)]
    if steps:
        xs, ys = [x for x, _ in steps], [y for _, y in steps]
        ax.step(xs, ys, where="post", color="#2b8cbe", linewidth=2)
        ax.scatter(xs, ys, color="#2b8cbe", s=12, zorder=3)
    ax.set_xlabel("trial number")
    ax.set_ylabel(f"best {objective} so far (val)")
    ax.set_title(f"best {objective} found so far ({ranking.rules.direction}), stopped trials not counted",
                 fontsize=10)
    return _save(fig, path)


def plot_trials(*, ranking: Ranking, trials: Sequence[search.Trial], path: Path) -> Path:
    """The objective of each trial against its number: finished ones as dots, stopped ones as crosses
    (their objective at the stop)."""
    objective = ranking.rules.objective
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    done = [(t.number, t.objective) for t in trials if not t.stopped and math.isfinite(t.objective)]
    stopped = [(t.number, t.objective) for t in trials if t.stopped and math.isfinite(t.objective)]
    ax.scatter([x for x, _ in done], [y for _, y in done], color="#2b8cbe", s=24, label="finished")
    ax.scatter([x for x, _ in stopped], [y for _, y in stopped], color="#e34a33", marker="x", s=36,
               label="stopped early (at the stop)")
    if done or stopped:
        ax.legend(fontsize=8)
    ax.set_xlabel("trial number")
    ax.set_ylabel(f"{objective} (val)")
    ax.set_title(f"{objective} per trial", fontsize=10)
    return _save(fig, path)


def plot_pareto(*, ranking: Ranking, path: Path) -> Path:
    """Every configuration's means on both objectives: the front highlighted, the candidate marked."""
    choice = ranking.pareto
    assert choice is not None
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    points = [p for p in choice.points if math.isfinite(p.first) and math.isfinite(p.second)]
    groups = (([p for p in points if not p.eligible], "#d9d9d9", "excluded (constraints)"),
              ([p for p in points if p.eligible and not p.on_front], "#a6bddb", "dominated"),
              ([p for p in points if p.on_front], "#2b8cbe", "Pareto front"))
    for group, color, label in groups:
        if group:
            ax.scatter([p.second for p in group], [p.first for p in group], s=40, color=color, label=label,
                       edgecolor="black", linewidth=0.5, zorder=3)
    front = sorted(choice.front, key=lambda p: p.second)
    if len(front) > 1:
        ax.plot([p.second for p in front], [p.first for p in front], color="#2b8cbe", linewidth=1, zorder=2)
    chosen = next((p for p in points if ranking.chosen is not None and p.config is ranking.chosen), None)
    if chosen is not None:
        ax.scatter([chosen.second], [chosen.first], s=220, facecolors="none", edgecolors="#e34a33", linewidths=2,
                   zorder=4, label="candidate")
    if math.isfinite(choice.best_first) and choice.tolerance > 0:
        edge = choice.best_first - (1 if choice.first_direction == "maximize" else -1) * choice.tolerance
        ax.axhline(edge, color="grey", linestyle="--", linewidth=1, label=f"tolerance {choice.tolerance:g}")
    if points:
        ax.legend(fontsize=8)
    ax.set_xlabel(f"{choice.metric} ({choice.direction}), mean")
    ax.set_ylabel(f"{choice.first_metric} ({choice.first_direction}), mean")
    ax.set_title("configurations on both objectives", fontsize=10)
    return _save(fig, path)


def write_plots(*, ranking: Ranking, directory: Path) -> list[str]:
    """Write every plot under directory/plots; return their paths relative to `directory`."""
    folder = directory / PLOTS_DIR
    written: list[Path] = []
    if search.shown(ranking.rules):
        trials = search.trials(runs=ranking.runs, rules=ranking.rules)
        if trials:
            written += [plot_best_so_far(ranking=ranking, trials=trials, path=folder / SEARCH_BEST),
                        plot_trials(ranking=ranking, trials=trials, path=folder / SEARCH_TRIALS)]
    if not ranking.configs:
        return [str(p.relative_to(directory)) for p in written]
    metrics = list(dict.fromkeys([*contract.FINAL_METRICS, ranking.rules.objective]))
    written.insert(0, plot_objective(ranking=ranking, path=folder / "objective_by_configuration.png"))
    for axis in ranking.rules.axes:
        written.append(plot_axis(ranking=ranking, axis=axis, metrics=metrics,
                                 path=folder / f"metrics_vs_{safe_name(axis)}.png"))
    if ranking.pareto is not None:
        written.append(plot_pareto(ranking=ranking, path=folder / PARETO))
    return [str(p.relative_to(directory)) for p in written]
