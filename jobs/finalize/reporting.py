"""The decision report: decision.md (from a Jinja template per language), decision.json, runs.csv.

`report_data` turns the analysis into plain, JSON-ready data (pure); the
templates in reports/templates/ word it; `write_report` is the only I/O.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

import contract
from contract.decision import DECISION_JSON, DECISION_MD, parse_decision
from jobs.finalize import advice, comparing, search, wording
from jobs.finalize.configs import ConfigSummary, Exclusion, Stat
from jobs.finalize.effects import AxisEffect
from jobs.finalize.flags import Flag
from jobs.finalize.gates import Decision
from jobs.finalize.pareto import PLOT as PARETO_PLOT
from jobs.finalize.ranking import Ranking
from jobs.finalize.records import ChampionInfo, EvaluationStatus, RunRecord
from jobs.finalize.verdict import MAX_SEEDS_NEEDED

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "reports" / "templates"
TEMPLATE_NAMES = {"en": "decision_template.md", "fr": "decision_template.fr.md"}
RUNS_CSV = "runs.csv"
# Parameters shown for the candidate, beside its axes, when the run logged them.
SHOWN_PARAMS = ("epochs", "imgsz", "lr0", "seed", "batch", "optimizer", "nbs", "warmup_epochs")
# The handout's per-run comparison table (lab-tp4-original.md, "Exemple de Comparaison"): these parameters, then
# these metrics, one row per run; other axes of the grid get a column after the seed.
RUN_TABLE_PARAMS = ("epochs", "imgsz", "lr0", "seed")
RUN_TABLE_METRICS = (contract.METRIC_MAP50_95, contract.METRIC_MAP50, contract.METRIC_PRECISION,
                     contract.METRIC_RECALL)
# A grid of more runs than RUN_TABLE_LIMIT shows its RUN_TABLE_TOP best runs and points to runs.csv.
RUN_TABLE_LIMIT, RUN_TABLE_TOP = 50, 20
# The handout's example reaches mAP50-95 0.2729 (3 epochs, yolov8n.pt downloaded, its own split): the figure
# students compare with.
HANDOUT_MAP50_95 = 0.2729


@dataclass(frozen=True)
class ReportInputs:
    ranking: Ranking
    decision: Decision
    candidate: RunRecord | None  # with its test metrics when evaluated
    champion: ChampionInfo | None  # the champion before this decision
    parent_run_id: str
    generated_at: str  # ISO 8601
    test: EvaluationStatus = EvaluationStatus(evaluated=False, reason="not_requested")
    registry: Mapping[str, Any] | None = None
    plots: Sequence[str] = ()  # paths relative to the report folder
    tracking_uri: str | None = None
    errors: Sequence[str] = field(default_factory=tuple)
    # the dataset card's summary (jobs.common.mlflow_dataset.card_profile): {"splits": {name: {"images", "boxes"}}}
    dataset: Mapping[str, Any] | None = None


def clean(value: Any) -> Any:
    """JSON-ready: NaN and infinities become None, tuples become lists, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def stat_data(stat: Stat) -> dict[str, Any]:
    return {"mean": stat.mean, "std": stat.std, "n": stat.n}


def exclusion_data(exclusion: Exclusion) -> dict[str, Any]:
    return {"metric": exclusion.metric, "bound": exclusion.bound, "limit": exclusion.limit, "value": exclusion.value}


def config_data(*, config: ConfigSummary, metrics: Sequence[str]) -> dict[str, Any]:
    return {"label": config.label, "rank": config.rank, "params": dict(config.params), "n": len(config.runs),
            "seeds": list(config.seeds), "run_ids": [r.run_id for r in config.runs],
            "stats": {m: stat_data(config.stat(m)) for m in metrics},
            "exclusions": [exclusion_data(e) for e in config.exclusions]}


def effect_data(effect: AxisEffect) -> dict[str, Any]:
    return {"axis": effect.axis, "levels": [{"value": lv.value, "mean": lv.mean, "n": lv.n} for lv in effect.levels],
            "spread": effect.spread, "ratio": effect.ratio, "identical": effect.identical,
            "verdict": effect.verdict, "best_value": effect.best_value}


def flag_data(flags: Iterable[Flag]) -> list[dict[str, Any]]:
    return [{"code": f.code, "data": dict(f.data)} for f in flags]


def candidate_data(*, ranking: Ranking, candidate: RunRecord | None) -> dict[str, Any] | None:
    if candidate is None:
        return None
    params = {k: candidate.logged_params[k] for k in SHOWN_PARAMS if k in candidate.logged_params}
    params.update({k: v for k, v in candidate.params.items() if k not in params})
    config = next((c for c in ranking.configs if any(r.run_id == candidate.run_id for r in c.runs)), None)
    return {"run_id": candidate.run_id, "point": candidate.point, "url": candidate.url,
            "weights_source": candidate.weights_source, "weights": candidate.weights, "params": params,
            "weights_shown": wording.shown_path(candidate.weights or ranking.rules.spec.weights),
            "weights_provenance": wording.weights_provenance(spec=candidate.weights or ranking.rules.spec.weights,
                                                             source=candidate.weights_source),
            "configuration": config.label if config else None,
            "metrics": {m: {"val": candidate.metric(m), "test": candidate.test_metric(m),
                            "config": stat_data(config.stat(m)) if config else None}
                        for m in ranking.metrics}}


def alternative_data(ranking: Ranking) -> list[dict[str, Any]]:
    return [{**config_data(config=a.config, metrics=ranking.metrics),
             "pros": [vars(d) for d in a.pros], "cons": [vars(d) for d in a.cons],
             "steadier": a.steadier, "fewer_seeds": a.fewer_seeds}
            for a in comparing.alternatives(ranking)]


def champion_data(champion: ChampionInfo | None) -> dict[str, Any] | None:
    if champion is None:
        return None
    return {"version": champion.version, "run_id": champion.run_id, "metrics": dict(champion.metrics),
            "dataset_md5": champion.dataset_md5, "missing": getattr(champion, "missing", None)}


def _param(run: RunRecord, name: str, rules: Any) -> Any:
    """A run's value for a parameter: its point's axis value, else what it logged, else the grid's fixed value."""
    if name in run.params:
        return run.params[name]
    if name in run.logged_params:
        return run.logged_params[name]
    return rules.spec.train.get(name)


def runs_table_data(ranking: Ranking) -> dict[str, Any]:
    """The handout's comparison table: every ranked or excluded run (finished, with its objective), best first on
    the objective. {"rows": [{"point", "run_id", "url", "params": {name: value}, "metrics": {name: value},
    "candidate", "excluded"}], "params": column names, "metrics": column names, "total": runs, "shown": rows,
    "truncated": whether only the best RUN_TABLE_TOP are shown (more than RUN_TABLE_LIMIT runs)}."""
    rules = ranking.rules
    params = [*RUN_TABLE_PARAMS, *(a for a in rules.axes if a not in RUN_TABLE_PARAMS)]
    candidate_id = ranking.candidate.run_id if ranking.candidate else None
    entries = [(run, config) for config in ranking.configs for run in config.runs]
    entries.sort(key=lambda e: (-rules.sign * e[0].metric(rules.spec.objective_metric), e[0].point))
    truncated = len(entries) > RUN_TABLE_LIMIT
    shown = entries[:RUN_TABLE_TOP] if truncated else entries
    rows = [{"point": run.point, "run_id": run.run_id, "url": run.url,
             "params": {p: _param(run, p, rules) for p in params},
             "metrics": {m: run.metric(m) for m in RUN_TABLE_METRICS},
             "candidate": run.run_id is not None and run.run_id == candidate_id, "excluded": bool(config.exclusions)}
            for run, config in shown]
    return {"rows": rows, "params": params, "metrics": list(RUN_TABLE_METRICS), "total": len(entries),
            "shown": len(rows), "truncated": truncated}


def scale_data(*, ranking: Ranking, candidate: RunRecord | None, dataset: Mapping[str, Any] | None,
               champion_gate: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Why mAP50-95 is small here next to the handout's example: the best value seen, the handout's, the epochs,
    the split sizes (images and boxes per split, from the dataset card; the test split's from the champion
    comparison when the card is not known) and where the weights came from. None without a mAP50-95."""
    metric = contract.METRIC_MAP50_95
    values = [r.metric(metric) for c in ranking.configs for r in c.runs if math.isfinite(r.metric(metric))]
    if not values:
        return None
    splits = {name: dict(sizes) for name, sizes in ((dataset or {}).get("splits") or {}).items()
              if isinstance(sizes, Mapping)}
    if "test" not in splits and champion_gate and champion_gate.get("n_images") is not None:
        splits["test"] = {"images": champion_gate.get("n_images"), "boxes": champion_gate.get("n_boxes")}
    spec = candidate.weights if candidate and candidate.weights else ranking.rules.spec.weights
    sources = {r.weights_source for c in ranking.configs for r in c.runs if r.weights_source}
    source = candidate.weights_source if candidate else (next(iter(sources)) if len(sources) == 1 else None)
    epochs = ranking.rules.spec.train.get("epochs")
    return {"metric": metric, "best": max(values), "handout": HANDOUT_MAP50_95,
            "epochs": epochs if isinstance(epochs, int) else None, "splits": splits,
            "weights_shown": wording.shown_path(spec),
            "provenance": wording.weights_provenance(spec=spec, source=source),
            "handout_weights": wording.HANDOUT_WEIGHTS}


def unranked_data(ranking: Ranking) -> list[dict[str, Any]]:
    return [{"point": u.run.point, "run_id": u.run.run_id, "status": u.run.status, "reason": u.reason,
             "url": u.run.url} for u in ranking.unranked]


def phases_data(ranking: Ranking) -> dict[str, Any]:
    """Where the train Jobs' time went: {"names": [phase metric names logged], "configs": [{"label", "n",
    "means": {name: mean seconds or None}}]}, empty lists when no run logged a phase (contract.PHASE_METRICS)."""
    logged = {k for c in ranking.configs for r in c.runs for k in r.metrics}
    names = [n for n in (*contract.PHASE_METRICS, contract.METRIC_FIRST_BATCH) if n in logged]
    configs = []
    for config in ranking.configs if names else ():
        means: dict[str, float | None] = {}
        for name in names:
            values = [r.metrics[name] for r in config.runs if name in r.metrics and math.isfinite(r.metrics[name])]
            means[name] = sum(values) / len(values) if values else None
        configs.append({"label": config.label, "n": len(config.runs), "means": means})
    return {"names": names, "configs": configs}


def rules_data(ranking: Ranking) -> dict[str, Any]:
    rules = ranking.rules
    return {"grid": rules.spec.name, "experiment": rules.spec.experiment, "language": rules.spec.language,
            "objective": {"metric": rules.spec.objective_metric, "direction": rules.spec.objective_direction},
            "constraints": [{"metric": c.metric, "min": c.min, "max": c.max} for c in rules.spec.constraints],
            "gates_config": {"min_success_fraction": rules.spec.min_success_fraction,
                             "min_objective": rules.spec.min_objective, "champion_margin": rules.spec.champion_margin,
                             "confidence": rules.spec.gates.confidence, "tie": rules.spec.gates.tie},
            "axes": {a: list(v) for a, v in rules.axes.items()},
            "distributions": {a: dict(d) for a in rules.axes if (d := rules.distribution(a)) is not None},
            "dataset": rules.spec.dataset_path,
            "dataset_md5": rules.spec.dataset_md5, "weights": rules.spec.weights,
            "registered_name": rules.spec.registered_model,
            "train": dict(rules.spec.train)}


def search_data(*, ranking: Ranking, plots: Sequence[str]) -> dict[str, Any] | None:
    """The search section (a sampled search or early stopping): how points were chosen, each trial, the best
    so far, the points stopped early and the compute that saved (jobs.finalize.search); None otherwise."""
    rules = ranking.rules
    spec = rules.spec
    if not search.shown(rules):
        return None
    trials = search.trials(runs=ranking.runs, rules=rules)
    saved = search.compute_saved(runs=ranking.runs, rules=rules)
    rule = spec.early_stopping
    searched = [p for p in rules.points if p.phase != contract.PHASE_CONFIRM]
    return {
        "mode": spec.search.mode, "trials_asked": spec.search.trials if spec.sampled else len(searched),
        "seed": spec.search.seed if spec.sampled else None,
        "trials_recorded": len(searched), "trials_run": len(trials),
        "trials_stopped": sum(t.stopped for t in trials),
        "trials_finished": sum(1 for t in trials if not t.stopped and t.run.status == "FINISHED"),
        "confirm_runs": sum(1 for r in ranking.runs if r.confirming and r.status != "MISSING"),
        "early_stopping": None if rule is None else {
            "rule": rule.rule, "metric": rule.metric, "min_epochs": rule.min_epochs,
            "startup_trials": rule.startup_trials, "reduction_factor": rule.reduction_factor,
            "threshold": rule.threshold},
        "best": trials[-1].best_so_far if trials else math.nan, "best_at": search.best_at(trials),
        "trials": [{"number": t.number, "point": t.run.point, "run_id": t.run.run_id, "status": t.run.status,
                    "objective": t.objective, "stopped": t.stopped, "best_so_far": t.best_so_far,
                    "params": dict(t.run.params)} for t in trials],
        "stopped": [{"point": s.run.point, "run_id": s.run.run_id, "url": s.run.url, "epoch": s.epoch,
                     "epochs_asked": s.epochs_asked, "epochs_trained": s.epochs_trained,
                     "objective": s.objective, "train_seconds": s.train_seconds,
                     "saved_seconds": s.saved_seconds} for s in saved.stopped],
        "saved_seconds": saved.saved_seconds, "used_seconds": saved.used_seconds,
        "saved_fraction": saved.fraction, "saved_unknown": list(saved.unknown),
        "plots": [p for p in plots if p.endswith((f"/{search.PLOT_BEST}", f"/{search.PLOT_TRIALS}"))],
    }


def interval_data(row: Any) -> dict[str, Any]:
    return {"label": row.config.label, "rank": row.config.rank, "n": row.n, "mean": row.mean, "std": row.std,
            "low": row.low, "high": row.high, "seeds": list(row.config.seeds)}


def confirm_data(ranking: Ranking) -> dict[str, Any] | None:
    """The confirm verdict (jobs.finalize.verdict), None without `confirm:`."""
    verdict = ranking.verdict
    if verdict is None:
        return None
    confirm = ranking.rules.spec.confirm
    difference = verdict.difference
    return {
        "top": confirm.top if confirm else None, "seeds": list(confirm.seeds) if confirm else [],
        "confidence": verdict.confidence, "tie_rule": verdict.tie_rule, "outcome": verdict.outcome,
        "separated": verdict.separated, "promotable": verdict.chosen is not None,
        "rows": [interval_data(r) for r in verdict.rows],
        "single": [c.label for c in verdict.single],
        "first": interval_data(verdict.first) if verdict.first else None,
        "second": interval_data(verdict.second) if verdict.second else None,
        "difference": None if difference is None else {"value": difference.value, "low": difference.low,
                                                       "high": difference.high, "df": difference.df},
        "chosen": verdict.chosen.label if verdict.chosen else None,
        "tie_metric": verdict.tie_metric, "tie_values": list(verdict.tie_values) if verdict.tie_values else None,
        "tie_settled_by": None if verdict.tie_values is None else (
            "metric" if all(map(math.isfinite, verdict.tie_values)) and verdict.tie_values[0] != verdict.tie_values[1]
            else "objective"),
    }


def separation_data(ranking: Ranking) -> dict[str, Any] | None:
    """Whether the data separates the candidate's configuration from the runner-up (jobs.finalize.verdict), on
    every grid: the confirm verdict with `confirm:`, else the plain grid's. None only when nothing was ranked."""
    verdict = ranking.separation
    if verdict is None:
        return None
    difference = verdict.difference
    return {
        "phase": verdict.phase, "confidence": verdict.confidence, "tie_rule": verdict.tie_rule,
        "outcome": verdict.outcome, "separated": verdict.separated, "promotable": verdict.chosen is not None,
        "headline": verdict.headline,
        "rows": [interval_data(r) for r in verdict.rows], "single": [c.label for c in verdict.single],
        "first": interval_data(verdict.first) if verdict.first else None,
        "second": interval_data(verdict.second) if verdict.second else None,
        "difference": None if difference is None else {"value": difference.value, "low": difference.low,
                                                       "high": difference.high, "df": difference.df},
        "chosen": verdict.chosen.label if verdict.chosen else None,
        "chosen_is_first": verdict.chosen is not None and verdict.first is not None
        and verdict.chosen is verdict.first.config,
        "tie_metric": verdict.tie_metric, "tie_values": list(verdict.tie_values) if verdict.tie_values else None,
        "seeds_needed": verdict.seeds_needed, "seeds_needed_capped": verdict.seeds_needed == MAX_SEEDS_NEEDED,
        "seeds": max((r.n for r in (verdict.first, verdict.second) if r is not None), default=0),
    }


def pareto_data(*, ranking: Ranking, plots: Sequence[str]) -> dict[str, Any] | None:
    """The two-objective section (jobs.finalize.pareto), None without `objective.second`."""
    pareto = ranking.pareto
    if pareto is None:
        return None
    return {
        "metric": pareto.metric, "direction": pareto.direction, "tolerance": pareto.tolerance,
        "best_first": pareto.best_first,
        "points": [{"label": p.config.label, "rank": p.config.rank, "first": p.first, "second": p.second,
                    "eligible": p.eligible, "on_front": p.on_front, "within": p.within,
                    "chosen": ranking.chosen is p.config} for p in pareto.points],
        "front": [p.config.label for p in pareto.front],
        "chosen": pareto.chosen.label if pareto.chosen else None,
        "candidate_follows": "confirm" if ranking.verdict is not None else ("pareto" if pareto.chosen else "rank"),
        "plots": [p for p in plots if p.endswith(f"/{PARETO_PLOT}")],
    }


def report_data(inputs: ReportInputs) -> dict[str, Any]:
    """Everything the report says, as plain data: decision.json, and the templates' context."""
    ranking, decision = inputs.ranking, inputs.decision
    steps = advice.next_steps(ranking=ranking, decision=decision)
    champion_gate = decision.gate("champion")
    return clean({
        **rules_data(ranking),
        "parent_run_id": inputs.parent_run_id, "generated_at": inputs.generated_at,
        "tracking_uri": inputs.tracking_uri,
        "decision": {"verdict": decision.verdict, "promote": decision.promote, "failed_gates": list(decision.failed),
                     "gates": [{"name": g.name, "passed": g.passed, "data": dict(g.data)} for g in decision.gates]},
        "candidate": candidate_data(ranking=ranking, candidate=inputs.candidate),
        "champion": champion_data(inputs.champion),
        "registry": dict(inputs.registry) if inputs.registry is not None else None,
        "test": vars(inputs.test),
        "alternatives": alternative_data(ranking),
        "risks": flag_data(advice.risks(ranking=ranking, candidate=inputs.candidate)),
        "conditions": flag_data(advice.conditions(ranking=ranking, decision=decision, candidate=inputs.candidate)),
        "next_steps": {term: flag_data(items) for term, items in steps.items()},
        "metrics": list(ranking.metrics),
        "configs": [config_data(config=c, metrics=ranking.metrics) for c in ranking.configs],
        "effects": [effect_data(e) for e in ranking.effects], "seed_spread": ranking.seed_spread,
        "objective_gap": advice.objective_gap(ranking),
        "flags": flag_data(ranking.flags), "unranked": unranked_data(ranking), "phases": phases_data(ranking),
        "n_points": ranking.n_points, "n_success": ranking.n_success, "n_stopped": ranking.n_stopped,
        "n_confirm_points": sum(p.phase == contract.PHASE_CONFIRM for p in ranking.rules.points),
        "search": search_data(ranking=ranking, plots=inputs.plots), "confirm": confirm_data(ranking),
        "separation": separation_data(ranking),
        "pareto": pareto_data(ranking=ranking, plots=inputs.plots),
        "plots": list(inputs.plots), "errors": list(inputs.errors),
        "runs_table": runs_table_data(ranking),
        "scale": scale_data(ranking=ranking, candidate=inputs.candidate, dataset=inputs.dataset,
                            champion_gate=champion_gate.data if champion_gate else None),
        "weights_shown": wording.shown_path(ranking.rules.spec.weights),
    })


def fmt_number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.0f}"


def fmt_stat(stat: Mapping[str, Any] | None, digits: int = 4) -> str:
    if not stat or stat.get("mean") is None:
        return "—"
    if stat.get("std") is None:
        return fmt_number(stat["mean"], digits)
    return f"{fmt_number(stat['mean'], digits)} ± {fmt_number(stat['std'], digits)}"


def environment(templates_dir: Path = TEMPLATES_DIR, language: str = "en") -> jinja2.Environment:
    """The templates' Jinja environment; `language` words the `metric` and `direction` filters."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir)), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.filters["num"] = fmt_number
    env.filters["pm"] = fmt_stat
    env.filters["pct"] = lambda v: "—" if v is None else f"{100 * v:.0f} %"
    env.filters["conf"] = lambda v: "—" if v is None else f"{round(100 * v, 1):g} %"  # a confidence level
    env.filters["join_values"] = lambda values: ", ".join(str(v) for v in values)
    env.filters["metric"] = lambda name: wording.metric_label(str(name), language)
    env.filters["direction"] = lambda name: wording.direction_label(str(name), language)
    env.filters["path"] = wording.shown_path  # an absolute local path by its file name
    env.filters["scrub"] = lambda value: wording.scrub_paths(None if value is None else str(value))
    return env


def render_markdown(*, data: Mapping[str, Any], templates_dir: Path = TEMPLATES_DIR) -> str:
    language = data["language"]
    template = environment(templates_dir, language).get_template(TEMPLATE_NAMES[language])
    return template.render(**data, contract={"TEST_PREFIX": contract.TEST_PREFIX})


def runs_csv(ranking: Ranking) -> str:
    """Every grid point's run, one row each: the CSV export the lab asks for."""
    rank_of = {r.run_id: c for c in ranking.configs for r in c.runs}
    reason_of = {u.run.point: u.reason for u in ranking.unranked}
    param_names = sorted({k for r in ranking.runs for k in r.logged_params})
    metric_names = [*ranking.metrics, *sorted({k for r in ranking.runs for k in r.metrics
                                                if k not in ranking.metrics and "/" not in k})]
    axes = list(ranking.rules.axes)
    header = ["point", "run_id", "status", "unranked_reason", "configuration", "config_rank", "excluded",
              "candidate", "weights_source", "phase", "trial", "stopped_early_at_epoch", *axes, *metric_names,
              *(f"params.{p}" for p in param_names)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    candidate_id = ranking.candidate.run_id if ranking.candidate else None
    for run in ranking.runs:
        config = rank_of.get(run.run_id) if run.run_id else None
        writer.writerow([
            run.point, run.run_id or "", run.status, reason_of.get(run.point, ""),
            config.label if config else "", config.rank if config and config.rank else "",
            "yes" if config and config.exclusions else "", "yes" if run.run_id and run.run_id == candidate_id else "",
            run.weights_source or "", run.phase or "", "" if run.number is None else run.number,
            "" if run.stopped_at is None else run.stopped_at, *(run.params.get(a, "") for a in axes),
            *(_csv_number(run.metric(m)) for m in metric_names),
            *(run.logged_params.get(p, "") for p in param_names)])
    return out.getvalue()


def _csv_number(value: float) -> str:
    return repr(value) if math.isfinite(value) else ""


def write_report(*, directory: Path, data: Mapping[str, Any], markdown: str, csv_text: str) -> list[Path]:
    """decision.md, decision.json and runs.csv in `directory`. decision.json is checked first against its
    reader's typed model (contract.decision.parse_decision): a field the controller reads with the wrong
    shape fails here, in the finalizer, not later in `controller report`."""
    encoded = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    parse_decision(json.loads(encoded), source=DECISION_JSON)
    directory.mkdir(parents=True, exist_ok=True)
    files = {DECISION_MD: markdown, DECISION_JSON: encoded, RUNS_CSV: csv_text}
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return [directory / name for name in files]
