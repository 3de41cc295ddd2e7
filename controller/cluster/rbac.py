"""The Kubernetes permissions of the tp4 controller: the one list of them.

The controller's Kubernetes adapter (issue 6) imports `CONTROLLER_RULES` to
know what it may call; the chart's Role (charts/tp4/templates/controller.yaml)
grants exactly these rules, no more, and tests/test_chart.py checks that the
rendered Role equals this constant. Adding a call to the adapter means adding
its verb here and in the Role, in the same change.

Pure data: no kubernetes client import (the contract module's rule); the Grid's identity is
contract.grid_resource.GRID.

Owner references: a Job owned by its Grid (so that deleting the Grid deletes
its Jobs) must set `blockOwnerDeletion: false`, or the controller needs
`update` on `grids/finalizers` in clusters that enable the
OwnerReferencesPermissionEnforcement admission plugin.
"""

from __future__ import annotations

from dataclasses import dataclass

from contract.grid_resource import GRID


@dataclass(frozen=True)
class Rule:
    """One RBAC rule: verbs on one resource of one API group ("" is the core group)."""

    api_group: str
    resource: str
    verbs: frozenset[str]

    def as_policy_rule(self) -> dict[str, list[str]]:
        """The rule as it appears in a rbac.authorization.k8s.io/v1 Role."""
        return {"apiGroups": [self.api_group], "resources": [self.resource], "verbs": sorted(self.verbs)}


def _rule(api_group: str, resource: str, *verbs: str) -> Rule:
    return Rule(api_group, resource, frozenset(verbs))


# the Grid's identity is the contract's (contract.grid_resource.GRID); these names are kept for their importers
GRID_GROUP, GRID_VERSION, GRID_KIND, GRID_PLURAL = GRID.group, GRID.version, GRID.kind, GRID.plural

CONTROLLER_RULES: tuple[Rule, ...] = (
    # the Grids it reconciles: listed and watched, never written but their status
    _rule(GRID_GROUP, GRID_PLURAL, "list", "watch"),
    _rule(GRID_GROUP, f"{GRID_PLURAL}/status", "patch"),
    # one Job per grid point plus the finalizer; delete replaces a failed or changed point; patch cuts the
    # deadline of a point asked to stop early that did not end in time (controller.cluster.reconciler)
    _rule("batch", "jobs", "create", "delete", "get", "list", "patch", "watch"),
    # Events on the Grid (submitted, point failed, finalizer started, ...).
    # No pods or pods/log: `controller logs` runs with the user's own credentials.
    _rule("", "events", "create"),
    # leader election (controller/cluster/leader.py): read the Lease, create it once, renew and take it over
    # (a replace guarded by its resourceVersion); never deleted, never watched or listed
    _rule("coordination.k8s.io", "leases", "create", "get", "update"),
)


def rules_by_resource(rules: tuple[Rule, ...] = CONTROLLER_RULES) -> dict[tuple[str, str], frozenset[str]]:
    """{(api group, resource): verbs}: the form in which two rule lists are compared."""
    merged: dict[tuple[str, str], frozenset[str]] = {}
    for rule in rules:
        key = (rule.api_group, rule.resource)
        merged[key] = merged.get(key, frozenset()) | rule.verbs
    return merged
