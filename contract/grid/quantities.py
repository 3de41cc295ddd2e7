"""Kubernetes resource quantities (`cpu: "500m"`, `memory: 3Gi`), as the Job's resources take them."""

from __future__ import annotations

import re
from typing import Annotated

from contract.grid.scalars import Check, fail


def _quantity(pattern: str, what: str) -> Check:
    def check(value: object) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise fail("quantity", f"not a Kubernetes {what} quantity", value)
        return value
    return Check(check, {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": pattern}],
                         "x-kubernetes-int-or-string": True})


CpuQuantity = Annotated[str, _quantity(r"^\d+(\.\d+)?m?$", "CPU")]
MemoryQuantity = Annotated[str, _quantity(r"^\d+(\.\d+)?([KMGTPE]i?)?$", "memory")]

