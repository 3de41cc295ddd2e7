"""The report's plots, as PNG files (matplotlib, Agg backend: no display needed), titled in the report's language.

Each plot has a `figure_*` function that builds it (pure: a matplotlib Figure, inspectable by tests) and a `plot_*`
function that saves it. Seeds are labels, not a scale: they are drawn as points per seed value, never joined by a
line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the backend must be chosen before pyplot is imported
import matplotlib.pyplot as plt

import contract
from jobs.finalize import pareto, search
from jobs.finalize.configs import ConfigSummary
from jobs.finalize.gridrules import SEED_AXIS
from jobs.finalize.ranking import Ranking
from jobs.finalize.records import RunRecord
from jobs.finalize.wording import direction_label, metric_label

PLOTS_DIR = "plots"
DPI = 100

TEXTS: Mapping[str, Mapping[str, str]] = {
    "en": {
        "objective_title": "{metric} per configuration: mean ± std over seeds (grey: excluded)",
        "val": "{metric} (val)", "excluded": "excl.",
        "axis_title": "metrics against {axis} (dots: runs, line: mean)",
        "sampled_title": "metrics against {axis}, sampled {kind} (dots: runs)",
        "seed_title": "metrics per seed (one dot per run, bar: mean; seeds are labels, not a scale)",
        "trial": "trial number", "best_so_far": "best {metric} so far (val)",
        "best_title": "best {metric} found so far ({direction}), stopped trials not counted",
        "finished": "finished", "stopped": "stopped early (at the stop)", "per_trial": "{metric} per trial",
        "pareto_excluded": "excluded (constraints)", "dominated": "dominated", "front": "Pareto front",
        "candidate": "candidate", "tolerance": "tolerance {tolerance}", "mean": "{metric} ({direction}), mean",
        "pareto_title": "configurations on both objectives",
    },
    "fr": {
        "objective_title": "{metric} par configuration : moyenne ± écart-type sur les seeds (gris : exclue)",
        "val": "{metric} (val)", "excluded": "exclue",
        "axis_title": "métriques selon {axis} (points : runs, trait : moyenne)",
        "sampled_title": "métriques selon {axis}, tiré selon {kind} (points : runs)",
        "seed_title": "métriques par seed (un point par run, barre : moyenne ; une seed est une étiquette, "
                      "pas une échelle)",
        "trial": "numéro de l'essai", "best_so_far": "meilleur {metric} jusqu'ici (val)",
        "best_title": "meilleur {metric} trouvé jusqu'ici ({direction}), essais arrêtés non comptés",
        "finished": "terminé", "stopped": "arrêté tôt (valeur à l'arrêt)", "per_trial": "{metric} par essai",
        "pareto_excluded": "exclue (contraintes)", "dominated": "dominée", "front": "front de Pareto",
        "candidate": "candidat", "tolerance": "tolérance {tolerance}", "mean": "{metric} ({direction}), moyenne",
        "pareto_title": "configurations sur les deux objectifs",
    },
}


def text(language: str, key: str, **values: object) -> str:
    """A plot's text in `language` ("en" or "fr"; any other falls back to English)."""
    return TEXTS.get(language, TEXTS["en"])[key].format(**values)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def figure_objective(*, ranking: Ranking, language: str) -> plt.Figure:
    """Objective per configuration: bar = mean over seeds, error bar = std, dots = the seeds' runs."""
    objective = ranking.rules.spec.objective_metric
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
    ax.set_xticks(list(positions), [_config_label(c, language) for c in configs], rotation=20, ha="right",
                  fontsize=8)
    label = metric_label(objective, language)
    ax.set_ylabel(text(language, "val", metric=label))
    ax.set_title(text(language, "objective_title", metric=label))
    return fig


def plot_objective(*, ranking: Ranking, path: Path, language: str = "en") -> Path:
    return _save(figure_objective(ranking=ranking, language=language), path)


def _config_label(config: ConfigSummary, language: str) -> str:
    prefix = f"#{config.rank} " if config.rank else text(language, "excluded") + " "
    return prefix + config.label.replace(", ", "\n")


NUMERIC_DISTRIBUTIONS = ("uniform", "loguniform", "int")


def figure_axis(*, ranking: Ranking, axis: str, metrics: Sequence[str], language: str) -> plt.Figure:
    """Each metric against one axis: every successful run as a dot. A hyperparameter's marginal mean is a line
    across its values; the seed's values are labels, so its means are short bars, never joined. An axis sampled
    from a numeric distribution is drawn on its own scale (log for loguniform)."""
    runs = [r for c in ranking.configs for r in c.runs]
    values = list(ranking.rules.axes[axis])
    distribution = ranking.rules.distribution(axis)
    kind = next(iter(distribution)) if distribution else None
    numeric = kind in NUMERIC_DISTRIBUTIONS
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        if numeric:
            _numeric_panel(ax=ax, runs=runs, axis=axis, metric=metric, log=kind == "loguniform", language=language)
        else:
            _axis_panel(ax=ax, runs=runs, axis=axis, values=values, metric=metric, language=language,
                        joined=axis != SEED_AXIS)
    if numeric:
        title = text(language, "sampled_title", axis=axis, kind=kind)
    else:
        title = text(language, "seed_title" if axis == SEED_AXIS else "axis_title", axis=axis)
    fig.suptitle(title)
    return fig


def plot_axis(*, ranking: Ranking, axis: str, metrics: Sequence[str], path: Path, language: str = "en") -> Path:
    return _save(figure_axis(ranking=ranking, axis=axis, metrics=metrics, language=language), path)


def _numeric_panel(*, ax: plt.Axes, runs: Sequence[RunRecord], axis: str, metric: str, log: bool,
                   language: str) -> None:
    points = [(float(r.params[axis]), r.metric(metric)) for r in runs
              if isinstance(r.params.get(axis), (int, float)) and math.isfinite(r.metric(metric))]
    ax.scatter([x for x, _ in points], [y for _, y in points], s=16, color="#2b8cbe", alpha=0.8)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(axis)
    ax.set_title(metric_label(metric, language), fontsize=10)


def _axis_panel(*, ax: plt.Axes, runs: Sequence[RunRecord], axis: str, values: list, metric: str, language: str,
                joined: bool) -> None:
    means = []
    for i, value in enumerate(values):
        ys = [r.metric(metric) for r in runs if r.params.get(axis) == value and math.isfinite(r.metric(metric))]
        ax.scatter([i] * len(ys), ys, s=16, color="#2b8cbe", alpha=0.8)
        means.append(sum(ys) / len(ys) if ys else math.nan)
    if joined:
        ax.plot(range(len(values)), means, color="black", marker="_", markersize=14)
    else:  # one short bar per value, drawn as a marker: nothing joins two values
        ax.scatter(range(len(values)), means, color="black", marker="_", s=400, linewidths=2, zorder=3)
    ax.set_xticks(range(len(values)), [str(v) for v in values])
    ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_xlabel(axis)
    ax.set_title(metric_label(metric, language), fontsize=10)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=DPI)
    plt.close(fig)
    return path


SEARCH_BEST, SEARCH_TRIALS, PARETO = search.PLOT_BEST, search.PLOT_TRIALS, pareto.PLOT


def figure_best_so_far(*, ranking: Ranking, trials: Sequence[search.Trial], language: str) -> plt.Figure:
    """The best objective found so far (finished, non-stopped trials) against the trial number."""
    objective = metric_label(ranking.rules.spec.objective_metric, language)
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    steps = [(t.number, t.best_so_far) for t in trials if math.isfinite(t.best_so_far)]
    if steps:
        xs, ys = [x for x, _ in steps], [y for _, y in steps]
        ax.step(xs, ys, where="post", color="#2b8cbe", linewidth=2)
        ax.scatter(xs, ys, color="#2b8cbe", s=12, zorder=3)
    ax.set_xlabel(text(language, "trial"))
    ax.set_ylabel(text(language, "best_so_far", metric=objective))
    ax.set_title(text(language, "best_title", metric=objective,
                      direction=direction_label(ranking.rules.spec.objective_direction, language)), fontsize=10)
    return fig


def plot_best_so_far(*, ranking: Ranking, trials: Sequence[search.Trial], path: Path, language: str = "en") -> Path:
    return _save(figure_best_so_far(ranking=ranking, trials=trials, language=language), path)


def figure_trials(*, ranking: Ranking, trials: Sequence[search.Trial], language: str) -> plt.Figure:
    """The objective of each trial against its number: finished ones as dots, stopped ones as crosses
    (their objective at the stop)."""
    objective = metric_label(ranking.rules.spec.objective_metric, language)
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    done = [(t.number, t.objective) for t in trials if not t.stopped and math.isfinite(t.objective)]
    stopped = [(t.number, t.objective) for t in trials if t.stopped and math.isfinite(t.objective)]
    ax.scatter([x for x, _ in done], [y for _, y in done], color="#2b8cbe", s=24, label=text(language, "finished"))
    ax.scatter([x for x, _ in stopped], [y for _, y in stopped], color="#e34a33", marker="x", s=36,
               label=text(language, "stopped"))
    if done or stopped:
        ax.legend(fontsize=8)
    ax.set_xlabel(text(language, "trial"))
    ax.set_ylabel(text(language, "val", metric=objective))
    ax.set_title(text(language, "per_trial", metric=objective), fontsize=10)
    return fig


def plot_trials(*, ranking: Ranking, trials: Sequence[search.Trial], path: Path, language: str = "en") -> Path:
    return _save(figure_trials(ranking=ranking, trials=trials, language=language), path)


def figure_pareto(*, ranking: Ranking, language: str) -> plt.Figure:
    """Every configuration's means on both objectives: the front highlighted, the candidate marked."""
    choice = ranking.pareto
    assert choice is not None
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    points = [p for p in choice.points if math.isfinite(p.first) and math.isfinite(p.second)]
    groups = (([p for p in points if not p.eligible], "#d9d9d9", text(language, "pareto_excluded")),
              ([p for p in points if p.eligible and not p.on_front], "#a6bddb", text(language, "dominated")),
              ([p for p in points if p.on_front], "#2b8cbe", text(language, "front")))
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
                   zorder=4, label=text(language, "candidate"))
    if math.isfinite(choice.best_first) and choice.tolerance > 0:
        edge = choice.best_first - (1 if choice.first_direction == "maximize" else -1) * choice.tolerance
        ax.axhline(edge, color="grey", linestyle="--", linewidth=1,
                   label=text(language, "tolerance", tolerance=f"{choice.tolerance:g}"))
    if points:
        ax.legend(fontsize=8)
    ax.set_xlabel(text(language, "mean", metric=metric_label(choice.metric, language),
                       direction=direction_label(choice.direction, language)))
    ax.set_ylabel(text(language, "mean", metric=metric_label(choice.first_metric, language),
                       direction=direction_label(choice.first_direction, language)))
    ax.set_title(text(language, "pareto_title"), fontsize=10)
    return fig


def plot_pareto(*, ranking: Ranking, path: Path, language: str = "en") -> Path:
    return _save(figure_pareto(ranking=ranking, language=language), path)


def write_plots(*, ranking: Ranking, directory: Path, language: str | None = None) -> list[str]:
    """Write every plot under directory/plots, worded in `language` (default: the grid's report.language);
    return their paths relative to `directory`."""
    language = language or ranking.rules.spec.language
    folder = directory / PLOTS_DIR
    written: list[Path] = []
    if search.shown(ranking.rules):
        trials = search.trials(runs=ranking.runs, rules=ranking.rules)
        if trials:
            written += [plot_best_so_far(ranking=ranking, trials=trials, path=folder / SEARCH_BEST,
                                         language=language),
                        plot_trials(ranking=ranking, trials=trials, path=folder / SEARCH_TRIALS, language=language)]
    if not ranking.configs:
        return [str(p.relative_to(directory)) for p in written]
    metrics = list(dict.fromkeys([*contract.FINAL_METRICS, ranking.rules.spec.objective_metric]))
    written.insert(0, plot_objective(ranking=ranking, path=folder / "objective_by_configuration.png",
                                     language=language))
    for axis in ranking.rules.axes:
        written.append(plot_axis(ranking=ranking, axis=axis, metrics=metrics,
                                 path=folder / f"metrics_vs_{safe_name(axis)}.png", language=language))
    if ranking.pareto is not None:
        written.append(plot_pareto(ranking=ranking, path=folder / PARETO, language=language))
    return [str(p.relative_to(directory)) for p in written]
