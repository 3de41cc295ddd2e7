"""A sampled search in the finalizer: trials recorded as tags, points stopped early, the search section.

Synthetic runs only (no MLflow): grid.json's points and the parent run's trial tags go through
rules_from_grid_json as results.load_rules passes them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import contract
from jobs.finalize import plotting, search
from jobs.finalize.gates import decide
from jobs.finalize.gridrules import GridRules, GridSpecError, rules_from_grid_json
from jobs.finalize.ranking import Ranking, rank
from jobs.finalize.records import RunRecord
from jobs.finalize.reporting import EvaluationStatus, ReportInputs, render_markdown, report_data, runs_csv

# trial number -> (imgsz, lr0, mAP50-95); trials 2 and 5 are stopped early (epoch), 6 failed
TRIALS = {0: (320, 0.002, 0.10), 1: (416, 0.01, 0.15), 2: (320, 0.05, 0.04), 3: (416, 0.003, 0.12),
          4: (320, 0.02, 0.12), 5: (416, 0.08, 0.03), 6: (416, 0.0015, 0.0), 7: (320, 0.009, 0.125)}
STOPPED = {2: 3, 5: 2}
FAILED = {6}
# confirm runs: (trial whose configuration is re-run, seed, mAP50-95)
CONFIRM = [(1, 1, 0.152), (1, 2, 0.149), (7, 1, 0.124), (7, 2, 0.126)]
EPOCHS = 10


def search_spec(**overrides: Any) -> dict[str, Any]:
    spec = {"name": "search-grid", "experiment": "exp", "dataset": {"path": "data/tiny"},
            "model": {"weights": "yolov8n.pt", "registered_name": "m"},
            "train": {"epochs": EPOCHS, "seed": 0, "optimizer": "SGD"},
            "axes": {"imgsz": {"choice": [320, 416]}, "lr0": {"loguniform": [0.001, 0.1]}},
            "search": {"mode": "random", "trials": len(TRIALS), "seed": 3},
            "early_stopping": {"rule": "median", "min_epochs": 2},
            "confirm": {"top": 2, "seeds": [1, 2], "tie": "no"},
            "gates": {"min_success_fraction": 0.75, "min_objective": 0.05},
            "report": {"language": "en"}}
    return {**spec, **overrides}


def trial_tag(name: str, number: int, params: Mapping[str, Any], phase: str) -> tuple[str, str]:
    return contract.TAG_TRIAL_PREFIX + name, json.dumps(
        {"number": number, "params": dict(params), "phase": phase, "spec_hash": f"hash-{name}"}, sort_keys=True)


def search_rules(*, listed: int = 0, confirm: bool = True, **overrides: Any) -> GridRules:
    """The search's rules: grid.json lists the first `listed` trials (a random search lists them all, a TPE
    search none), every trial is also a tag on the parent run, then the confirm points."""
    trials = {f"t{n}": (n, {"imgsz": imgsz, "lr0": lr0}) for n, (imgsz, lr0, _) in TRIALS.items()}
    tags = dict(trial_tag(name, n, params, contract.PHASE_SEARCH) for name, (n, params) in trials.items())
    if confirm:
        for k, (source, seed, _) in enumerate(CONFIRM):
            imgsz, lr0, _ = TRIALS[source]
            number = len(TRIALS) + k
            tags.update([trial_tag(f"c{number}", number, {"imgsz": imgsz, "lr0": lr0, "seed": seed},
                                   contract.PHASE_CONFIRM)])
    points = [{"name": name, "spec_hash": f"hash-{name}", "params": params}
              for name, (n, params) in trials.items() if n < listed]
    tags["mlflow.runName"] = "grid-search-grid"  # other tags are ignored
    return rules_from_grid_json({"spec": search_spec(**overrides), "points": points}, tags=tags)


def search_runs(rules: GridRules, *, epochs_metric: bool = True) -> list[RunRecord]:
    runs = []
    for point in rules.points:
        n = point.number
        assert n is not None
        objective = TRIALS[n][2] if n < len(TRIALS) else CONFIRM[n - len(TRIALS)][2]
        trained = STOPPED.get(n, EPOCHS)
        seconds = 10.0 * trained * point.params["imgsz"] / 320  # 10 s per epoch at 320
        metrics = {"mAP50-95": objective, "mAP50": 2 * objective, "precision": 0.5, "recall": 0.5,
                   "train_seconds": seconds, "inference_ms_per_image": point.params["imgsz"] / 20,
                   "model_size_mb": 6.0, **({contract.METRIC_EPOCHS: trained} if epochs_metric else {})}
        runs.append(RunRecord(point=point.name, params=point.params, status="FAILED" if n in FAILED else "FINISHED",
                              run_id=f"run-{point.name}", metrics={} if n in FAILED else metrics,
                              weights_source="pretrained", stopped_at=STOPPED.get(n), phase=point.phase, number=n))
    return runs


def search_ranking(**overrides: Any) -> Ranking:
    rules = search_rules(**overrides)
    return rank(runs=search_runs(rules), rules=rules)


def build(ranking: Ranking, plots: tuple[str, ...] = ()) -> dict[str, Any]:
    decision = decide(ranking=ranking, candidate=ranking.candidate, champion=None)
    return report_data(ReportInputs(ranking=ranking, decision=decision, candidate=ranking.candidate, champion=None,
                                    parent_run_id="p", generated_at="2026-01-01T00:00:00+00:00", plots=plots,
                                    test=EvaluationStatus(evaluated=False, reason="synthetic")))


# --- the grid's points: grid.json and the trial tags ---------------------------------------------------

def test_points_are_grid_json_and_the_trial_tags_united_by_name() -> None:
    rules = search_rules(listed=3)
    names = [p.name for p in rules.points]
    assert names == ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "c8", "c9", "c10", "c11"]
    assert [p.number for p in rules.points] == list(range(12))
    assert rules.points[0].phase == contract.PHASE_SEARCH and rules.points[-1].phase == contract.PHASE_CONFIRM
    # a TPE search lists no point in grid.json: its trials are all tags
    tpe = search_rules(listed=0, search={"mode": "tpe", "trials": len(TRIALS)})
    assert [p.name for p in tpe.points] == names


def test_a_distribution_axis_is_the_values_run_sorted() -> None:
    rules = search_rules()
    assert rules.axes["imgsz"] == (320, 416)
    assert rules.axes["lr0"] == (0.0015, 0.002, 0.003, 0.009, 0.01, 0.02, 0.05, 0.08)
    assert rules.distribution("lr0") == {"loguniform": [0.001, 0.1]} and rules.distribution("imgsz") is not None
    # the confirm points carry a seed: the fixed one (train.seed) is every other point's
    assert rules.axes["seed"] == (0, 1, 2) and rules.config_axes == ("imgsz", "lr0")
    assert rules.points[0].params == {"imgsz": 320, "lr0": 0.002, "seed": 0}


def test_a_list_axis_keeps_its_order_then_the_values_only_run() -> None:
    document_axes = {"imgsz": [416, 320], "seed": [5, 3]}
    tags = dict([trial_tag("c9", 9, {"imgsz": 416, "seed": 1}, contract.PHASE_CONFIRM)])
    points = [{"name": f"p{i}", "spec_hash": f"h{i}", "params": {"imgsz": imgsz, "seed": seed}}
              for i, (imgsz, seed) in enumerate([(416, 5), (416, 3), (320, 5), (320, 3)])]
    spec = search_spec(axes=document_axes, search={"mode": "grid"}, train={"epochs": EPOCHS}, early_stopping=None)
    rules = rules_from_grid_json({"spec": spec, "points": points}, tags=tags)
    assert rules.axes == {"imgsz": (416, 320), "seed": (5, 3, 1)}
    assert rules.points[-1].phase == contract.PHASE_CONFIRM and rules.points[0].phase is None


def test_bad_trial_tags_and_no_point_at_all_are_refused() -> None:
    with pytest.raises(GridSpecError, match="tag tp4.trial.t9: must be JSON"):
        rules_from_grid_json({"spec": search_spec(), "points": []},
                             tags={contract.TAG_TRIAL_PREFIX + "t9": "{not json"})
    with pytest.raises(GridSpecError, match="tag tp4.trial.t9"):
        rules_from_grid_json({"spec": search_spec(), "points": []},
                             tags={contract.TAG_TRIAL_PREFIX + "t9": json.dumps({"number": 1, "params": {},
                                                                                  "phase": "later", "spec_hash": "h"})})
    with pytest.raises(GridSpecError, match="points: missing or empty, and no trial recorded"):
        rules_from_grid_json({"spec": search_spec(), "points": []}, tags={})


# --- points stopped early --------------------------------------------------------------------------------

def test_stopped_points_are_ranked_apart() -> None:
    ranking = search_ranking()
    assert [r.point for r in ranking.stopped] == ["t2", "t5"] and ranking.n_stopped == 2
    ranked = {r.point for c in ranking.configs for r in c.runs}
    assert not ranked & {"t2", "t5"}
    assert [u.point for u in (x.run for x in ranking.unranked)] == ["t6"]  # failed, not stopped
    unranked_flag = next(f for f in ranking.flags if f.code == "unranked")
    assert unranked_flag.data["points"] == ["t6"]
    assert ranking.candidate is not None and not ranking.candidate.stopped
    gate = decide(ranking=ranking, candidate=ranking.candidate, champion=None).gate("success_fraction")
    assert gate is not None and gate.data == {"n_success": 9, "n_points": 10, "n_stopped": 2, "fraction": 0.9,
                                              "required": 0.75}


def test_a_stopped_run_never_enters_a_mean_nor_becomes_the_candidate() -> None:
    rules = search_rules(confirm=False)
    runs = search_runs(rules)
    best_but_stopped = runs[2]
    runs[2] = RunRecord(**{**vars(best_but_stopped), "metrics": {**best_but_stopped.metrics, "mAP50-95": 0.99}})
    ranking = rank(runs=runs, rules=rules)
    assert ranking.candidate is not None and ranking.candidate.point == "t1"
    assert max(c.stat("mAP50-95").mean for c in ranking.configs) == pytest.approx(0.15)


def test_the_compute_saved_by_stopping() -> None:
    rules = search_rules()
    saved = search.compute_saved(runs=search_runs(rules), rules=rules)
    # t2: 30 s for 3 of 10 epochs -> 70 s saved; t5 (imgsz 416): 26 s for 2 of 10 -> 104 s saved
    assert [(s.run.point, s.epoch, s.epochs_asked, s.epochs_trained, s.saved_seconds) for s in saved.stopped] == [
        ("t2", 3, 10.0, 3.0, pytest.approx(70.0)), ("t5", 2, 10.0, 2.0, pytest.approx(104.0))]
    search_seconds = sum(10.0 * STOPPED.get(n, EPOCHS) * imgsz / 320 for n, (imgsz, _, _) in TRIALS.items()
                         if n not in FAILED)
    assert saved.used_seconds == pytest.approx(search_seconds)  # confirm runs are not the search's
    assert saved.saved_seconds == pytest.approx(174.0)
    assert saved.fraction == pytest.approx(174.0 / (174.0 + search_seconds)) and not saved.unknown


def test_epochs_come_from_the_tag_without_the_metric_and_unknown_ones_are_listed() -> None:
    rules = search_rules(train={"seed": 0})  # epochs not fixed: nothing says how many were asked
    runs = search_runs(rules, epochs_metric=False)
    saved = search.compute_saved(runs=runs, rules=rules)
    assert [s.epochs_trained for s in saved.stopped] == [3.0, 2.0]
    assert saved.unknown == ("t2", "t5") and saved.saved_seconds == 0.0
    assert search.saved_seconds(train_seconds=30.0, asked=10, trained=0) != search.saved_seconds(
        train_seconds=30.0, asked=10, trained=3)
    assert math.isnan(search.saved_seconds(train_seconds=30.0, asked=10, trained=0))


def test_trials_and_the_best_found_so_far() -> None:
    rules = search_rules()
    found = search.trials(runs=search_runs(rules), rules=rules)
    assert [t.number for t in found] == list(range(8))  # the confirm runs are not trials
    assert [t.best_so_far for t in found] == pytest.approx([0.10, 0.15, 0.15, 0.15, 0.15, 0.15, 0.15, 0.15])
    assert [t.stopped for t in found] == [n in STOPPED for n in range(8)]
    assert math.isnan(found[6].objective)  # failed
    assert search.best_at(found) == 1


# --- the report ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("language", ["en", "fr"])
def test_the_search_section(language: str, tmp_path: Path) -> None:
    ranking = search_ranking(report={"language": language})
    plots = plotting.write_plots(ranking=ranking, directory=tmp_path)
    assert plots[:3] == ["plots/objective_by_configuration.png", "plots/search_best_so_far.png",
                         "plots/search_objective_per_trial.png"]
    assert "plots/metrics_vs_lr0.png" in plots and "plots/pareto_front.png" not in plots
    for relative in plots:
        with Image.open(tmp_path / relative) as image:
            assert image.format == "PNG" and image.size[0] > 300
    data = build(ranking, plots=tuple(plots))
    assert data["search"]["trials_run"] == 8 and data["search"]["trials_stopped"] == 2
    assert data["search"]["trials_finished"] == 5 and data["search"]["confirm_runs"] == 4
    assert data["n_stopped"] == 2 and data["n_confirm_points"] == 4
    markdown = render_markdown(data=data)
    assert "{{" not in markdown and "{%" not in markdown
    heading = "## Search — how the points were chosen" if language == "en" else \
        "## Recherche — comment les points ont été choisis"
    section = markdown[markdown.index(heading):markdown.index("## Confirmation")]
    assert markdown.index("## 1. ") < markdown.index(heading) < markdown.index("## 2. ")
    if language == "en":
        assert "**8 trials run**: 5 finished, **2 stopped early**, 1 failed or unfinished" in section
        assert "rule `median` on `epoch/mAP50-95`, never before epoch 2" in section
        assert "**Best mAP50-95 found**: 0.1500, at trial 1" in section
        assert "### Points stopped early" in section
        assert "| `t2` | 3 | 10 | 0.0400 | 30.0 | 70.0 |" in section
        assert "**Compute saved**: 174.0 s of training, 22 % of what the search would have used" in section
        assert "train_seconds × (epochs asked / epochs trained − 1)" in section
        assert "- **Search space**: imgsz ~ choice(320, 416) (2 value(s) run) · lr0 ~ loguniform(0.001, 0.1)" \
            in markdown
    else:
        assert "**8 essais lancés** : 5 terminés, **2 arrêtés tôt**" in section
        assert "### Points arrêtés tôt" in section and "| `t5` | 2 | 10 | 0.0300 | 26.0 | 104.0 |" in section
        assert "**Calcul économisé** : 174.0 s d'entraînement, 22 %" in section
    assert "![plots/search_best_so_far.png](plots/search_best_so_far.png)" in section
    assert "![plots/search_objective_per_trial.png](plots/search_objective_per_trial.png)" in section
    decision = markdown[markdown.index("## 5. "):]
    assert "9 / 10 " in decision and ("2 stopped early on purpose" if language == "en" else "2 arrêtés tôt") \
        in decision


def test_a_plain_grid_has_no_search_section() -> None:
    from tests.jobs.test_reporting import build as plain_build
    from tests.jobs.test_reporting import lab_ranking

    data = plain_build(lab_ranking())
    assert data["search"] is None and data["confirm"] is None and data["pareto"] is None
    markdown = render_markdown(data=data)
    assert "## Search" not in markdown and "## Confirmation" not in markdown and "Two objectives" not in markdown


def test_early_stopping_on_a_grid_without_a_stop() -> None:
    rules = search_rules(search={"mode": "grid"}, axes={"imgsz": [320, 416], "lr0": list(sorted(
        {lr0 for _, lr0, _ in TRIALS.values()}))}, confirm=False)
    runs = [r if not r.stopped else RunRecord(**{**vars(r), "stopped_at": None}) for r in search_runs(rules)]
    data = build(rank(runs=runs, rules=rules))
    assert data["search"]["mode"] == "grid" and data["search"]["stopped"] == []
    markdown = render_markdown(data=data)
    assert "No point was stopped early." in markdown and "- **Grid**: " in markdown


def test_runs_csv_says_phase_trial_and_stop() -> None:
    ranking = search_ranking()
    rows = {r["point"]: r for r in csv.DictReader(io.StringIO(runs_csv(ranking)))}
    assert len(rows) == 12
    assert (rows["t2"]["phase"], rows["t2"]["trial"], rows["t2"]["stopped_early_at_epoch"]) == ("search", "2", "3")
    assert rows["t2"]["configuration"] == "" and rows["t2"]["unranked_reason"] == ""
    assert (rows["c9"]["phase"], rows["c9"]["seed"]) == ("confirm", "2")


def test_every_point_stopped_is_a_no_that_says_so() -> None:
    rules = search_rules(confirm=False)
    runs = [RunRecord(**{**vars(r), "status": "FINISHED", "stopped_at": 2, "metrics": {"mAP50-95": 0.01}})
            for r in search_runs(rules)]
    ranking = rank(runs=runs, rules=rules)
    assert ranking.candidate is None and ranking.n_stopped == 8 and not ranking.unranked
    data = build(ranking)
    assert data["decision"]["failed_gates"] == ["success_fraction", "candidate"]
    markdown = render_markdown(data=data)
    assert "0 of 0 (0 %; the gate asks for 75 %). 8 more were stopped early on purpose (not counted)." in markdown
    assert "**Best mAP50-95 found**: —" in markdown
