"""A grid file means what a person reads (issue 23): YAML 1.1's surprises are read as written.

PyYAML implements YAML 1.1: an unquoted `no` is false (the "Norway problem"), `1e-3` a string. In a field
whose type is a string (every enum: confirm.tie, gates.tie, search.mode, ...; every free text) the text is
taken as written; elsewhere YAML's reading stands. Every example of docs/ and examples/ loads as written.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contract.errors import InvalidInput
from contract.grid import GridSpec, load_grid, parse_grid, parse_yaml, read_as_written
from tests.helpers.paths import REPO

BASE = """\
name: lab
dataset: {path: data/tiny_coco}
model: {weights: yolov8n.pt}
axes: {lr0: [0.01, 0.02]}
"""


def grid_of(text: str) -> GridSpec:
    return parse_grid(parse_yaml(text, source="grid.yaml"), source="grid.yaml", base_dir=REPO)


@pytest.mark.parametrize("word", ["no", "No", "NO", "off", "yes", "on", "n", "y"])
def test_an_unquoted_word_in_a_string_field_is_the_word(word: str) -> None:
    raw = parse_yaml(BASE + f"experiment: {word}\nconfirm: {{seeds: [2, 3], tie: {word}}}\ngates: {{tie: {word}}}\n",
                     source="grid.yaml")
    assert raw["experiment"] == word and raw["confirm"]["tie"] == word and raw["gates"]["tie"] == word


def test_tie_no_as_the_docs_write_it_means_no_promotion() -> None:
    grid = grid_of(BASE + "confirm: {top: 2, seeds: [2, 3, 4], confidence: 0.95, tie: no}\ngates: {tie: no}\n")
    assert grid.confirm is not None and grid.confirm.tie == "no"
    assert grid.gates.tie == "no"


def test_every_string_enum_is_read_as_written_and_a_wrong_word_is_named() -> None:
    with pytest.raises(InvalidInput) as refused:
        grid_of(BASE + "report: {language: no}\nsearch: {mode: off}\nobjective: {direction: yes}\n")
    text = str(refused.value)
    assert "report.language: must be one of 'en' or 'fr', got 'no'" in text
    assert "search.mode: must be one of 'grid', 'random' or 'tpe', got 'off'" in text
    assert "objective.direction: must be one of 'maximize' or 'minimize', got 'yes'" in text
    assert "boolean" not in text


def test_boolean_and_number_fields_keep_yaml_s_reading() -> None:
    grid = grid_of(BASE.replace("axes: {lr0: [0.01, 0.02]}", "axes: {lr0: [1e-3, 2.5E-2]}")
                   + "train: {amp: no, cos_lr: yes, epochs: 2}\n")
    assert grid.train["amp"] is False and grid.train["cos_lr"] is True and grid.train["epochs"] == 2
    assert grid.axes["lr0"] == [0.001, 0.025]  # YAML 1.1 would have read "1e-3", a string


def test_numbers_in_text_fields_are_the_digits_written() -> None:
    raw = parse_yaml(BASE + "experiment: 1.10\njob: {image: 0755, node_selector: {pool: 1e3, gpu: yes}}\n",
                     source="grid.yaml")
    assert raw["experiment"] == "1.10"
    assert raw["job"] == {"image": "0755", "node_selector": {"pool": "1e3", "gpu": "yes"}}


def test_quoted_values_and_nulls_are_left_alone() -> None:
    text = BASE.replace("model: {weights: yolov8n.pt}\n", "model: {weights: x.pt, registered_name: null}\n")
    raw = parse_yaml(text + "confirm: {seeds: [2, 3], tie: 'no'}\n", source="grid.yaml")
    assert raw["confirm"]["tie"] == "no" and raw["model"]["registered_name"] is None


def test_only_the_string_fields_are_retagged() -> None:
    from contract.grid import GridLoader

    loader = GridLoader(BASE + "train: {amp: no, optimizer: 1}\nconfirm: {seeds: [2], tie: off}\n")
    try:
        changed = read_as_written(loader.get_single_node())
    finally:
        loader.dispose()
    assert changed == ["train.optimizer", "confirm.tie"]


# --- every example, as written -----------------------------------------------------------------------------

DOCS = sorted((REPO / "docs").glob("*.md"))
FENCED = re.compile(r"^```ya?ml\n(.*?)^```", re.MULTILINE | re.DOTALL)
# an inline grid fragment: `section: {...}` or `section: [...]` (objective.second is nested under objective)
INLINE = re.compile(r"`((?:confirm|constraints|early_stopping|gates|search|job|report|objective(?:\.second)?): "
                    r"[{\[][^`]*)`")


def fenced_examples() -> list[tuple[str, str]]:
    return [(f"{path.name}#{n}", block) for path in DOCS for n, block in enumerate(FENCED.findall(path.read_text()))]


def inline_examples() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        for span in INLINE.findall(path.read_text()):
            key, _, value = span.partition(": ")
            if re.search(r"[{,]\s*[a-z_]+\s*[,}]", value):  # a schematic list of keys: `{top, seeds, tie}`
                continue
            text = f"objective:\n  second: {value}\n" if key == "objective.second" else f"{key}: {value}\n"
            found.append((f"{path.name}: {span}", text))
    return found


def test_the_docs_have_examples_to_load() -> None:
    assert fenced_examples() and any("tie: no" in text for _, text in inline_examples())


@pytest.mark.parametrize(("where", "block"), fenced_examples(), ids=[w for w, _ in fenced_examples()])
def test_a_docs_grid_file_loads_as_written(where: str, block: str, tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(block)
    grid = load_grid(path, base_dir=REPO)
    assert grid.name


@pytest.mark.parametrize(("where", "fragment"), inline_examples(), ids=[w for w, _ in inline_examples()])
def test_a_docs_grid_fragment_loads_as_written(where: str, fragment: str) -> None:
    grid = grid_of(BASE + fragment)
    if "tie: no" in fragment:
        assert grid.confirm is not None and grid.confirm.tie == "no"


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_an_example_file_loads_as_written(path: Path) -> None:
    grid = load_grid(path, base_dir=REPO)
    assert grid.to_dict()["name"] == grid.name
