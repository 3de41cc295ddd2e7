"""Where the tests find the project and the shared local copies (COCO128, the offline backbone)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("TP4_SHARED", REPO.parent / "shared"))
COCO128 = SHARED / "datasets" / "coco128"
BACKBONE = SHARED / "weights" / "yolov5nu-coco-backbone.pt"
