"""`-o json|yaml|name|wide` of `status` and `render`, as kubectl prints them: one object for one named thing,
a `kind: List` of `items` for several, `job/NAME` lines for `-o name` (what `logs job/NAME` takes)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import yaml
from rich.console import Console

import contract
from controller.core.state import GridState
from controller.progress import STATUS_COLUMNS, print_status, status_rows

OUTPUTS = ("json", "yaml", "wide", "name")  # None: the table
JOB_PREFIXES = ("job/", "jobs/", "job.batch/", "jobs.batch/")  # what kubectl accepts for a Job


def job_name(value: str) -> str:
    """`job/NAME` (kubectl's form, also jobs/, job.batch/) or NAME -> NAME."""
    for prefix in JOB_PREFIXES:
        if value.startswith(prefix):
            return value[len(prefix):]
    return value


def grid_document(state: GridState, *, points: list[str], metric: str = contract.METRIC_MAP50_95,
                  obsolete: frozenset[str] = frozenset(), hidden: int = 0,
                  status: dict[str, Any] | None = None) -> dict[str, Any]:
    """A grid's status as data: {"grid", "phase", "message", "submission" (its parent run id), "experiment",
    "objective" (the metric column's name), "columns" (the table's columns, in order), "hiddenObsolete" (Jobs
    left out), "jobs": controller.progress.status_rows}, plus `status` (a cluster Grid's: counts, best,
    decision, report) when given."""
    document: dict[str, Any] = {
        "grid": state.grid, "phase": state.phase, "message": state.message, "submission": state.submission,
        "experiment": state.experiment, "objective": metric, "columns": [*STATUS_COLUMNS, metric],
        "hiddenObsolete": hidden,
        "jobs": status_rows(state, points=points, metric=metric, obsolete=obsolete),
    }
    if status is not None:
        document["status"] = status
    return document


def dump(documents: Sequence[dict[str, Any]], output: str, *, single: bool) -> str:
    """json or yaml text of `documents`: the one document when `single`, else a List of them."""
    data: Any = documents[0] if single and len(documents) == 1 else {"kind": "List", "items": list(documents)}
    if output == "json":
        return json.dumps(data, indent=2, default=str) + "\n"
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def print_grids(console: Console, documents: list[tuple[GridState, dict[str, Any]]], *, output: str | None,
                single: bool, notes: dict[str, list[str]] | None = None) -> None:
    """Print grids' status in `output` format: the table (None, "wide": with WIDE_COLUMNS), json, yaml or name.
    `notes`: lines a table prints after a grid's (a cluster Grid's counts, best point, decision)."""
    if output in ("json", "yaml"):
        console.file.write(dump([doc for _, doc in documents], output, single=single))
        console.file.flush()
        return
    if output == "name":
        for _, doc in documents:
            for row in doc["jobs"]:
                console.file.write(f"job/{row['job']}\n")
        console.file.flush()
        return
    for state, doc in documents:
        obsolete = frozenset(row["job"] for row in doc["jobs"] if not row["current"])
        print_status(console, state, points=[row["job"] for row in doc["jobs"]], metric=doc["objective"],
                     obsolete=obsolete, hidden=doc["hiddenObsolete"], wide=output == "wide")
        for line in (notes or {}).get(state.grid, []):
            console.print(line, highlight=False, soft_wrap=True, markup=False)


def print_manifests(text: str, output: str | None) -> str:
    """`render`'s Job manifests (YAML documents) in `output` format: yaml (as rendered, also the default),
    json (a List), name (`job/NAME` lines) or wide (a table: name, role, the point's arguments)."""
    if output in (None, "yaml"):
        return text
    manifests = [m for m in yaml.safe_load_all(text) if m]
    if output == "json":
        return dump(manifests, "json", single=False)
    if output == "name":
        return "".join(f"job/{m['metadata']['name']}\n" for m in manifests)
    rows = []
    for manifest in manifests:
        labels = manifest["metadata"].get("labels") or {}
        container = manifest["spec"]["template"]["spec"]["containers"][0]
        rows.append([manifest["metadata"]["name"], labels.get(contract.LABEL_ROLE, ""),
                     labels.get(contract.LABEL_SPEC_HASH, ""), " ".join(container.get("args") or [])])
    from controller.progress import plain_table

    return "\n".join(plain_table(["job", "role", "spec-hash", "args"], rows)) + "\n"
