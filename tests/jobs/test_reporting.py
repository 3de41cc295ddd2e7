"""The decision report in both languages, decision.json, runs.csv and the plots (no MLflow)."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from jobs.finalize import plotting
from jobs.finalize.gates import decide
from jobs.finalize.ranking import Ranking, rank
from jobs.finalize.records import ChampionInfo
from jobs.finalize.reporting import EvaluationStatus, ReportInputs, render_markdown, report_data, runs_csv, write_report
from tests.jobs.test_ranking import lab_metrics, lab_rules, make_runs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SECTIONS = {
    "en": ["# Promotion decision", "## 1. Objective and constraints", "## 2. Promoted candidate",
           "## 3. Alternatives — pros and cons", "## 4. Risks and mitigations", "## 5. Decision",
           "## 6. Next steps", "**Short term**", "**Medium term**", "**Long term**",
           "## Appendix A — configurations (mean ± std over seeds)", "## Appendix B — what each axis did",
           "## Appendix C — warnings", "## Appendix D — plots and files"],
    "fr": ["# Décision de promotion", "## 1. Objectifs et contraintes", "## 2. Candidat promu",
           "## 3. Arguments pour et contre — alternatives", "## 4. Risques et mitigations",
           "## 5. Décision finale", "## 6. Étapes suivantes", "**Court terme**", "**Moyen terme**",
           "**Long terme**", "## Annexe A — configurations (moyenne ± écart-type sur les seeds)",
           "## Annexe B — effet de chaque axe", "## Annexe C — avertissements",
           "## Annexe D — graphiques et fichiers"],
}


def lab_ranking(*, language: str = "en", metrics: Any = lab_metrics, **runs_options: Any) -> Ranking:
    rules = lab_rules(report={"language": language})
    return rank(runs=make_runs(rules, metrics, **runs_options), rules=rules)


def build(ranking: Ranking, *, champion: ChampionInfo | None = None, plots: tuple[str, ...] = (),
          registry: Mapping[str, Any] | None = None) -> dict[str, Any]:
    decision = decide(ranking=ranking, candidate=ranking.candidate, champion=champion)
    return report_data(ReportInputs(
        ranking=ranking, decision=decision, candidate=ranking.candidate, champion=champion,
        parent_run_id="parent123", generated_at="2025-01-01T00:00:00+00:00", plots=plots, registry=registry,
        test=EvaluationStatus(evaluated=False, reason="no dataset here")))


def section(markdown: str, heading: str) -> str:
    """The text under `heading`, up to the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    start = markdown.index(heading)
    following = re.search(rf"^#{{1,{len(level)}}} ", markdown[start + len(heading):], flags=re.MULTILINE)
    return markdown[start:start + len(heading) + following.start()] if following else markdown[start:]


@pytest.mark.parametrize("language", ["en", "fr"])
def test_the_report_has_every_section_of_the_lab_template(language: str) -> None:
    ranking = lab_ranking(language=language, metrics=lambda p: lab_metrics({**p, "lr0": 0.005}))
    markdown = render_markdown(data=build(ranking, plots=("plots/objective_by_configuration.png",)))
    positions = [markdown.index(heading) for heading in SECTIONS[language]]
    assert positions == sorted(positions), "sections out of order"
    candidate = ranking.candidate
    promoted = section(markdown, SECTIONS[language][2])
    assert candidate.run_id in promoted and "imgsz=416" in promoted and "0.1320" in promoted
    alternatives = section(markdown, SECTIONS[language][3])
    assert alternatives.count("### ") == 3 and "➖" in alternatives
    risks = section(markdown, SECTIONS[language][4])
    assert len([line for line in risks.splitlines() if line.startswith("| ") and "---" not in line]) == 5  # header + 4
    decision = section(markdown, SECTIONS[language][5])
    assert ("YES ✅" if language == "en" else "OUI ✅") in decision
    gates = ("success_fraction", "candidate", "constraints", "min_objective", "champion")
    assert all(gate in decision for gate in gates)
    configurations = section(markdown, SECTIONS[language][10])
    assert "0.1310 ± 0.0014" in configurations  # mean ± std of the best configuration
    warnings = section(markdown, SECTIONS[language][12])
    assert "lr0" in warnings and ("changed nothing" if language == "en" else "n'a rien changé") in warnings
    assert "![plots/objective_by_configuration.png](plots/objective_by_configuration.png)" in markdown
    assert "{{" not in markdown and "{%" not in markdown


@pytest.mark.parametrize("language", ["en", "fr"])
def test_a_no_names_the_failed_gates_and_what_would_change_it(language: str) -> None:
    ranking = lab_ranking(language=language)
    champion = ChampionInfo(version="7", run_id="older", metrics={"mAP50-95": 0.4})
    markdown = render_markdown(data=build(ranking, champion=champion))
    decision = section(markdown, SECTIONS[language][5])
    assert ("NO ❌" if language == "en" else "NON ❌") in decision
    # a champion is compared only on the test images both are evaluated on in this run, never on stored numbers
    assert ("champion v7 could not be compared on mAP50-95 (not evaluated on the test split in this run): it is kept"
            if language == "en" else "le champion v7 n'a pas pu être comparé sur mAP50-95 (non évalué sur le split "
            "test par ce finaliseur) : il est gardé") in decision
    assert "0.4000" not in decision
    assert ("What would change the answer" if language == "en" else "Ce qui changerait la réponse") in decision


def test_risks_are_fitted_to_the_grid() -> None:
    scratch = build(lab_ranking(weights_source="scratch"))
    codes = [r["code"] for r in scratch["risks"]]
    assert len(codes) == 4 and codes[0] == "scratch_weights"
    assert "pretraining_overlap" not in codes
    pretrained = [r["code"] for r in build(lab_ranking())["risks"]]
    assert len(pretrained) == 4 and "scratch_weights" not in pretrained
    assert "untested" in pretrained and "pretraining_overlap" in pretrained


def test_decision_json_is_strict_json_with_the_whole_analysis(tmp_path: Path) -> None:
    ranking = lab_ranking(status={"train-320-0.01-42": "FAILED"})
    data = build(ranking, registry={"name": "m", "version": "2", "champion_moved": True, "previous_champion": "1"})
    markdown = render_markdown(data=data)
    files = write_report(directory=tmp_path / "tp4-lab", data=data, markdown=markdown, csv_text=runs_csv(ranking))
    assert [f.name for f in files] == ["decision.md", "decision.json", "runs.csv"]

    def no_constant(name: str) -> None:
        raise AssertionError(f"{name} in decision.json")

    loaded = json.loads((tmp_path / "tp4-lab" / "decision.json").read_text(), parse_constant=no_constant)
    assert loaded["decision"]["verdict"] == "YES" and loaded["candidate"]["run_id"] == ranking.candidate.run_id
    single = next(c for c in loaded["configs"] if c["label"] == "imgsz=320, lr0=0.01")
    assert single["n"] == 1 and single["stats"]["mAP50-95"]["std"] is None
    assert loaded["unranked"] == [{"point": "train-320-0.01-42", "run_id": "run-train-320-0.01-42",
                                   "status": "FAILED", "reason": "failed", "url": None}]
    assert {e["axis"] for e in loaded["effects"]} == {"imgsz", "lr0"}
    assert "version 2" in markdown and "previous champion: version 1" in markdown


def test_runs_csv_has_every_point_once() -> None:
    ranking = lab_ranking(status={"train-320-0.01-42": "FAILED", "train-320-0.01-1": "MISSING"})
    rows = list(csv.DictReader(io.StringIO(runs_csv(ranking))))
    assert [r["point"] for r in rows] == [p.name for p in ranking.rules.points]
    by_point = {r["point"]: r for r in rows}
    assert by_point["train-320-0.01-42"]["unranked_reason"] == "failed"
    assert by_point["train-320-0.01-1"]["run_id"] == "" and by_point["train-320-0.01-1"]["status"] == "MISSING"
    assert by_point[ranking.candidate.point]["candidate"] == "yes"
    assert by_point[ranking.candidate.point]["config_rank"] == "1"
    assert math.isclose(float(by_point["train-416-0.01-42"]["mAP50-95"]), 0.142)


def test_plots_are_valid_pngs(tmp_path: Path) -> None:
    ranking = lab_ranking(status={"train-320-0.01-42": "FAILED"})
    written = plotting.write_plots(ranking=ranking, directory=tmp_path)
    assert written == ["plots/objective_by_configuration.png", "plots/metrics_vs_imgsz.png",
                       "plots/metrics_vs_lr0.png", "plots/metrics_vs_seed.png"]
    for relative in written:
        path = tmp_path / relative
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200


def test_no_successful_run_still_gives_a_report() -> None:
    ranking = lab_ranking(status={p: "FAILED" for p in [p.name for p in lab_rules().points]})
    data = build(ranking)
    assert data["candidate"] is None and data["decision"]["failed_gates"] == ["success_fraction", "candidate"]
    for language in ("en", "fr"):
        markdown = render_markdown(data={**data, "language": language})
        assert all(heading in markdown for heading in SECTIONS[language])
    assert plotting.write_plots(ranking=ranking, directory=Path("/nonexistent")) == []


def test_a_candidate_with_test_metrics_keeps_its_configuration() -> None:
    import dataclasses

    ranking = lab_ranking()
    evaluated = dataclasses.replace(ranking.candidate, metrics={**ranking.candidate.metrics, "test_mAP50-95": 0.2})
    decision = decide(ranking=ranking, candidate=evaluated, champion=None)
    data = report_data(ReportInputs(
        ranking=ranking, decision=decision, candidate=evaluated, champion=None, parent_run_id="p",
        generated_at="2025-01-01T00:00:00+00:00", plots=(), registry=None,
        test=EvaluationStatus(evaluated=True, reason="")))
    assert data["candidate"]["configuration"] == "imgsz=416, lr0=0.01"
    assert data["candidate"]["metrics"]["mAP50-95"]["config"] is not None


# --- a report a teacher reads without stumbling (issue 19) -----------------------------------------------------

BACKBONE = "/work/shared/weights/yolov5nu-coco-backbone.pt"
ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])/(?:[\w.@+-]+/)+")  # a POSIX absolute path, not a URI's "//" nor "runs:/"
HANDOUT_HEADERS = {
    "en": "| Run | Epochs | ImgSz | LR | Seed | mAP@50-95 | mAP@50 | Precision | Recall |",
    "fr": "| Run | Epochs | Taille d'image | Taux d'apprentissage | Seed | mAP@50-95 | mAP@50 | Précision | Rappel |",
}
RUNS_HEADING = {"en": "## Runs compared", "fr": "## Comparaison des runs"}


def offline_ranking(*, language: str, metrics: Any = lab_metrics, **spec: Any) -> Ranking:
    """The lab grid run on the offline backbone, given (as `make demo` does) as an absolute path outside the
    project: what the train Jobs tag their runs with."""
    import dataclasses

    rules = lab_rules(report={"language": language},
                      model={"weights": BACKBONE, "registered_name": "tp4-person-detector"}, **spec)
    runs = [dataclasses.replace(r, weights=BACKBONE, weights_source="path") for r in make_runs(rules, metrics)]
    return rank(runs=runs, rules=rules)


def table_rows(markdown: str, header: str) -> list[str]:
    start = markdown.index(header)
    rows = []
    for line in markdown[start:].splitlines()[2:]:
        if not line.startswith("| "):
            break
        rows.append(line)
    return rows


@pytest.mark.parametrize("language", ["en", "fr"])
def test_the_handout_table_has_one_row_per_run_best_first(language: str) -> None:
    ranking = lab_ranking(language=language)
    markdown = render_markdown(data=build(ranking))
    assert markdown.index("## 1. ") < markdown.index(RUNS_HEADING[language]) < markdown.index("## 2. ")
    rows = table_rows(markdown, HANDOUT_HEADERS[language])
    assert len(rows) == 8
    candidate = "candidate" if language == "en" else "candidat"
    assert rows[0] == f"| **`train-416-0.01-42`** ({candidate}) | 3 | 416 | 0.01 | 42 | **0.1420** | 0.2840 | 0.4000 " \
                      "| 0.5000 |"
    assert rows[-1] == "| `train-320-0.005-1` | 3 | 320 | 0.005 | 1 | 0.1000 | 0.2000 | 0.4000 | 0.5000 |"
    objectives = [float(row.split("|")[6].strip(" *")) for row in rows]
    assert objectives == sorted(objectives, reverse=True)


def test_a_large_grid_shows_its_best_runs_and_points_to_runs_csv() -> None:
    axes = {"imgsz": [160, 192, 224, 256, 288, 320], "lr0": [0.001, 0.002, 0.005, 0.01, 0.02], "seed": [1, 2]}
    rules = lab_rules(axes=axes)

    def metrics(p: Mapping[str, Any]) -> dict[str, float]:
        return {**lab_metrics({"imgsz": 416, "lr0": 0.01, "seed": 1}),
                "mAP50-95": p["imgsz"] / 1000 + p["lr0"] + p["seed"] / 10000}

    ranking = rank(runs=make_runs(rules, metrics), rules=rules)
    data = build(ranking)
    assert (data["runs_table"]["total"], data["runs_table"]["shown"], data["runs_table"]["truncated"]) == (60, 20, True)
    markdown = render_markdown(data=data)
    rows = table_rows(markdown, HANDOUT_HEADERS["en"])
    assert len(rows) == 20 and rows[0].startswith("| **`train-320-0.02-2`** (candidate) |")
    assert "**60 runs: the 20 best are shown**, the others are in [runs.csv](runs.csv)" in markdown


@pytest.mark.parametrize("language", ["en", "fr"])
def test_no_absolute_machine_path_and_the_weights_say_where_they_come_from(language: str) -> None:
    ranking = offline_ranking(language=language)
    decision = decide(ranking=ranking, candidate=ranking.candidate, champion=None)
    data = report_data(ReportInputs(
        ranking=ranking, decision=decision, candidate=ranking.candidate, champion=None, parent_run_id="p",
        generated_at="2025-01-01T00:00:00+00:00",
        test=EvaluationStatus(evaluated=False, reason="failed: dataset /home/student/tp4/data/tiny_coco is gone"),
        errors=("test evaluation failed: /home/student/tp4/data/tiny_coco/data.yaml: no such file",),
        registry={"error": "cannot write /var/lib/mlflow/artifacts/1/model"}))
    markdown = render_markdown(data=data)
    assert not ABSOLUTE_PATH.search(markdown), ABSOLUTE_PATH.findall(markdown)
    assert "(path)" not in markdown and "/work/shared" not in markdown
    promoted = section(markdown, SECTIONS[language][2])
    if language == "en":
        assert "- **Weights**: `yolov5nu-coco-backbone.pt`, the offline COCO-pretrained backbone" in promoted
        assert "freshly initialised detection head" in promoted
    else:
        assert "- **Poids** : `yolov5nu-coco-backbone.pt`, la dorsale (backbone) pré-entraînée sur COCO fournie " \
               "hors ligne" in promoted
        assert "tête de détection réinitialisée" in promoted
    assert "tiny_coco" in promoted  # the reason keeps the folder's name
    assert "`python -m controller finalize <grid.yaml>`" in markdown  # after an error, the command that retries
    assert data["candidate"]["weights"] == BACKBONE  # decision.json keeps what the run logged


@pytest.mark.parametrize("language", ["en", "fr"])
def test_the_metric_scale_is_explained(language: str) -> None:
    ranking = offline_ranking(language=language, metrics=lambda p: {**lab_metrics(p), "mAP50-95": 0.03 + (
        0.01 if p["imgsz"] == 416 else 0.0) + (0.002 if p["seed"] == 42 else 0.0)})
    decision = decide(ranking=ranking, candidate=ranking.candidate, champion=None)
    card = {"splits": {"train": {"images": 40, "boxes": 180}, "val": {"images": 10, "boxes": 30},
                       "test": {"images": 10, "boxes": 30}}}
    data = report_data(ReportInputs(
        ranking=ranking, decision=decision, candidate=ranking.candidate, champion=None, parent_run_id="p",
        generated_at="2025-01-01T00:00:00+00:00", dataset=card))
    markdown = render_markdown(data=data)
    runs = section(markdown, RUNS_HEADING[language])
    if language == "en":
        assert "**Why mAP50-95 is about 0.04 here and 0.27 in the handout.**" in runs
        assert "3 epochs on 40 training images and is scored on 10 validation images (30 person boxes)" in runs
        assert "the offline backbone `yolov5nu-coco-backbone.pt`" in runs and "`yolov8n.pt`" in runs
    else:
        assert "**Pourquoi mAP50-95 vaut environ 0.04 ici et 0.27 dans l'énoncé.**" in runs
        assert "3 epochs sur 40 images d'entraînement et il est évalué sur 10 images de validation " \
               "(30 boîtes de personnes)" in runs
        assert "la dorsale hors ligne `yolov5nu-coco-backbone.pt`" in runs and "`yolov8n.pt`" in runs
    # near the handout's figure there is nothing to explain
    assert "0.27" not in render_markdown(data=build(lab_ranking(language=language, metrics=lambda p: {
        **lab_metrics(p), "mAP50-95": 0.25})))


def edge_ranking(*, language: str, best_lr0: float) -> Ranking:
    """lr0 tried at 0.005, 0.01 and (added afterwards, so last in grid.yaml) 0.0025; `best_lr0` wins clearly."""
    def metrics(p: Mapping[str, Any]) -> dict[str, float]:
        return {**lab_metrics(p), "mAP50-95": (0.05 if p["lr0"] == best_lr0 else 0.03) + p["seed"] / 100000}

    rules = lab_rules(report={"language": language},
                      axes={"imgsz": [320], "lr0": [0.005, 0.01, 0.0025], "seed": [1, 42]})
    return rank(runs=make_runs(rules, metrics), rules=rules)


@pytest.mark.parametrize(("language", "best", "words"), [
    ("en", 0.0025, "Try lr0 below 0.0025: the best value is the lowest tried (0.0025, 0.005, 0.01)"),
    ("en", 0.01, "Try lr0 above 0.01: the best value is the highest tried (0.0025, 0.005, 0.01)"),
    ("fr", 0.0025, "Essayer lr0 en dessous de 0.0025 : la meilleure valeur est la plus basse des valeurs essayées"),
    ("fr", 0.01, "Essayer lr0 au-dessus de 0.01 : la meilleure valeur est la plus haute des valeurs essayées"),
])
def test_the_advice_names_the_edge(language: str, best: float, words: str) -> None:
    markdown = render_markdown(data=build(edge_ranking(language=language, best_lr0=best)))
    steps = section(markdown, SECTIONS[language][6])
    assert words in steps
    assert "au-delà" not in markdown and "beyond" not in steps
    middle = render_markdown(data=build(edge_ranking(language=language, best_lr0=0.005)))
    assert "lr0 below" not in middle and "lr0 above" not in middle and "lr0 en dessous" not in middle \
        and "lr0 au-dessus" not in middle


def test_french_is_worded_in_french() -> None:
    def metrics(p: Mapping[str, Any]) -> dict[str, float]:
        # the runner-up trades recall and speed for precision
        values = lab_metrics(p)
        if p["imgsz"] == 320:
            values.update(precision=0.6, recall=0.4)
        return values

    markdown = render_markdown(data=build(lab_ranking(language="fr", metrics=metrics, status={})))
    alternatives = section(markdown, SECTIONS["fr"][3])
    assert "- ➕ meilleure précision : 0.6000 contre 0.4000" in alternatives
    assert "- ➖ rappel moins bon : 0.4000 contre 0.5000" in alternatives
    assert "- ➕ entraînement plus rapide : 13.2 contre 14.2" in alternatives
    for stumble in ("meilleur precision", "moins bon recall", "train_seconds", "inference_ms_per_image",
                    "model_size_mb", "cpu_seconds", "from scratch", "resoumettre", "au-delà", "Registry", "gates"):
        assert stumble not in markdown, stumble
    annex = section(markdown, SECTIONS["fr"][10])
    assert "| précision | rappel | mAP50 | mAP50-95 | temps d'entraînement (s) | latence d'inférence (ms/image) |" \
        in annex
    assert "  - rappel ≥ 0.2000" in markdown


@pytest.mark.parametrize("language", ["en", "fr"])
def test_a_no_names_the_commands_that_change_it(language: str) -> None:
    markdown = render_markdown(data=build(lab_ranking(language=language, metrics=lambda p: {
        **lab_metrics(p), "mAP50-95": 0.01})))
    steps = section(markdown, SECTIONS[language][6])
    assert "`python -m controller submit-grid <grid.yaml>`" in steps
    assert "`python -m controller finalize <grid.yaml>`" in steps
    assert "relancer le finaliseur." not in markdown and "rerun the finalizer." not in markdown


def test_the_templates_name_their_module() -> None:
    from jobs.finalize.reporting import TEMPLATE_NAMES, TEMPLATES_DIR

    for name in TEMPLATE_NAMES.values():
        head = (TEMPLATES_DIR / name).read_text().splitlines()[0]
        assert "jobs/finalize/reporting.py" in head and " jobs/reporting.py" not in head


def with_champion_gate(data: dict[str, Any], **gate: Any) -> dict[str, Any]:
    gates = [g if g["name"] != "champion" else {**g, "passed": gate.pop("passed"), "data": gate}
             for g in data["decision"]["gates"]]
    return {**data, "decision": {**data["decision"], "gates": gates}}


COMPARED = {"status": "compared", "version": "3", "champion_run_id": "old", "margin": 0.0, "metric": "mAP50-95",
            "model": "tp4-person-detector", "alias": "champion", "basis": "test", "candidate_value": 0.0424,
            "champion_value": 0.0730, "improvement": -0.0306, "low": -0.0712, "high": 0.0101, "confidence": 0.95,
            "n_images": 10, "n_boxes": 30, "resolvable": 0.045, "separated": False, "rule": "low_above_margin",
            "resamples": 2000}


@pytest.mark.parametrize("language", ["en", "fr"])
def test_the_champion_gate_shows_its_interval_the_split_and_the_rule(language: str) -> None:
    champion = ChampionInfo(version="3", run_id="old")
    data = with_champion_gate(build(lab_ranking(language=language), champion=champion), passed=False, **COMPARED)
    decision = section(render_markdown(data=data), SECTIONS[language][5])
    if language == "en":
        assert "| champion | ❌ fail | mAP50-95 on the same 10 test images: 0.0424 vs champion v3 0.0730 " \
               "(improvement -0.0306, 95 % paired interval [-0.0712, 0.0101], margin 0.0000) |" in decision
        assert "(10 images, 30 person boxes)" in decision and "(2000 resamples)" in decision
        assert "**the two cannot be separated on this test split**" in decision
        assert "cannot resolve a difference smaller than about 0.0450" in decision
        assert "keep the champion unless the candidate is better with 95 % confidence" in decision
        assert "it does not, the champion is kept" in decision
    else:
        assert "| champion | ❌ échec | mAP50-95 sur les mêmes 10 images de test : 0.0424 contre 0.0730 pour le " \
               "champion v3 (gain -0.0306, intervalle apparié à 95 % [-0.0712, 0.0101], marge 0.0000) |" in decision
        assert "(10 images, 30 boîtes de personnes)" in decision
        assert "**les deux modèles ne peuvent pas être départagés sur ce split test**" in decision
        assert "ne distingue pas un écart inférieur à environ 0.0450" in decision
        assert "ce n'est pas le cas, le champion est gardé" in decision


@pytest.mark.parametrize("language", ["en", "fr"])
def test_an_unavailable_champion_and_the_old_gate_shape_both_render(language: str) -> None:
    champion = ChampionInfo(version="3", run_id="gone")
    unavailable = with_champion_gate(
        build(lab_ranking(language=language), champion=champion), passed=True, status="unavailable", version="3",
        champion_run_id="gone", margin=0.0, metric="mAP50-95", model="tp4-person-detector", alias="champion",
        missing="run", note="tp4-person-detector@champion (version 3): run gone was deleted")
    row = next(line for line in render_markdown(data=unavailable).splitlines() if line.startswith("| champion |"))
    if language == "en":
        assert "tp4-person-detector@champion (version 3): run gone was deleted: decided as with no champion" in row
    else:
        assert "l'alias `champion` du modèle `tp4-person-detector` désigne une version dont le run n'existe plus : " \
               "décision prise comme sans champion" in row
    # the gate's data before the champion comparison landed: no interval, no split size, no model
    old = with_champion_gate(build(lab_ranking(language=language), champion=champion), passed=True,
                             status="compared", version="3", champion_run_id="old", margin=0.0, metric="mAP50-95",
                             basis="val", candidate_value=0.142, champion_value=0.1, improvement=0.042)
    old_row = next(line for line in render_markdown(data=old).splitlines() if line.startswith("| champion |"))
    assert "0.1420" in old_row and "0.1000" in old_row and "[" not in old_row
    for status, data in (("not_comparable", {"reason": "weights of v3 at /tmp/x/best.pt unreadable"}),
                         ("unavailable", {})):
        rendered = render_markdown(data=with_champion_gate(build(lab_ranking(language=language), champion=champion),
                                                           passed=status == "unavailable", status=status,
                                                           version="3", margin=0.0, metric="mAP50-95", **data))
        assert "{{" not in rendered and not ABSOLUTE_PATH.search(rendered)
