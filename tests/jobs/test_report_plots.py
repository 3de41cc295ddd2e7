"""The report's plots speak the report's language, and seeds are points, never a trend (matplotlib artists)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from jobs.finalize import plotting
from tests.jobs.test_reporting import lab_ranking

FINAL_METRICS = ["precision", "recall", "mAP50", "mAP50-95"]
PANEL_TITLES = {"en": ["precision", "recall", "mAP50", "mAP50-95"],
                "fr": ["précision", "rappel", "mAP50", "mAP50-95"]}


def texts(fig: Figure) -> list[str]:
    """Every piece of text a reader sees: titles, axis labels, tick labels, legends."""
    found = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        found += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        found += [t.get_text() for t in ax.get_xticklabels()]
        legend = ax.get_legend()
        found += [t.get_text() for t in legend.get_texts()] if legend else []
    return [t for t in found if t]


def joining_lines(fig: Figure) -> Iterator[Line2D]:
    """Lines that join two points or more (a marker-only Line2D joins nothing)."""
    for ax in fig.axes:
        for line in ax.get_lines():
            if len(line.get_xdata()) > 1 and line.get_linestyle() not in ("None", "", " ", "none"):
                yield line


@pytest.fixture(autouse=True)
def close_figures() -> Iterator[None]:
    yield
    plt.close("all")


@pytest.mark.parametrize("language", ["en", "fr"])
def test_titles_and_labels_are_in_the_report_language(language: str) -> None:
    ranking = lab_ranking(language=language)
    objective = plotting.figure_objective(ranking=ranking, language=language)
    seed = plotting.figure_axis(ranking=ranking, axis="seed", metrics=FINAL_METRICS, language=language)
    imgsz = plotting.figure_axis(ranking=ranking, axis="imgsz", metrics=FINAL_METRICS, language=language)
    assert [ax.get_title() for ax in seed.axes] == PANEL_TITLES[language]
    if language == "en":
        assert "mAP50-95 per configuration: mean ± std over seeds (grey: excluded)" in texts(objective)
        assert "metrics against imgsz (dots: runs, line: mean)" in texts(imgsz)
        assert any(t.startswith("metrics per seed (one dot per run") for t in texts(seed))
    else:
        assert "mAP50-95 par configuration : moyenne ± écart-type sur les seeds (gris : exclue)" in texts(objective)
        assert "métriques selon imgsz (points : runs, trait : moyenne)" in texts(imgsz)
        assert any(t.startswith("métriques par seed (un point par run") for t in texts(seed))
        english = {"per configuration", "against", "dots", "excluded", "precision", "recall", "mean"}
        for figure in (objective, seed, imgsz):
            assert not [t for t in texts(figure) if any(word in t for word in english)], texts(figure)


def test_seeds_are_points_never_joined_by_a_line() -> None:
    ranking = lab_ranking()
    seed = plotting.figure_axis(ranking=ranking, axis="seed", metrics=FINAL_METRICS, language="en")
    assert list(joining_lines(seed)) == []
    for ax in seed.axes:
        dots = sum(len(c.get_offsets()) for c in ax.collections)
        assert dots == 8 + 2  # every run as a dot, and one mean bar per seed value (a marker, not a line)
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "42"]
    # a hyperparameter's marginal means are joined: the check above can fail
    imgsz = plotting.figure_axis(ranking=ranking, axis="imgsz", metrics=FINAL_METRICS, language="en")
    assert len(list(joining_lines(imgsz))) == len(FINAL_METRICS)


def test_write_plots_words_them_in_the_grid_language(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    titles: list[str] = []
    save = plotting._save

    def record(fig: Figure, path: Path) -> Path:
        titles.extend(texts(fig))
        return save(fig, path)

    monkeypatch.setattr(plotting, "_save", record)
    written = plotting.write_plots(ranking=lab_ranking(language="fr"), directory=tmp_path)
    assert written[0] == "plots/objective_by_configuration.png" and "plots/metrics_vs_seed.png" in written
    assert "mAP50-95 par configuration : moyenne ± écart-type sur les seeds (gris : exclue)" in titles
    assert "rappel" in titles and "recall" not in titles
