"""Write the Grid CRD (charts/tp4/templates/grid-crd.yaml) generated from the grid model: `make crd`.

The schema comes from contract/grid/ (GridSpec; contract/crd.py makes it structural);
tests/contract/test_crd.py fails when the chart's file differs from what this writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from contract.crd import CHART_PATH, crd_template  # noqa: E402


def main() -> int:
    path = ROOT / CHART_PATH
    text = crd_template()
    if path.is_file() and path.read_text() == text:
        print(f"{CHART_PATH}: up to date")
        return 0
    path.write_text(text)
    print(f"{CHART_PATH}: written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
