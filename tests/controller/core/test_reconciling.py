"""The grid's rules as a pure function over observed states."""

from __future__ import annotations

from controller.core.reconciling import (
    Conflict,
    Create,
    Delete,
    DesiredGrid,
    DesiredJob,
    GridPhase,
    JobPhase,
    ObservedJob,
    is_up_to_date,
    reconcile,
)

POINTS = tuple(DesiredJob(f"train-{i}", f"hash{i}") for i in range(4))
FINAL = DesiredJob("finalize-lab", "fhash")


def desired(**changes) -> DesiredGrid:
    values = {"grid": "lab", "submission": "run2", "points": POINTS, "finalizer": FINAL, "parallelism": 2}
    values.update(changes)
    return DesiredGrid(**values)


def job(
    name: str, phase: JobPhase, *, spec_hash: str | None = None, submission: str = "run2", grid: str = "lab"
) -> ObservedJob:
    default_hash = FINAL.spec_hash if name == FINAL.name else "hash" + name.split("-")[-1]
    return ObservedJob(name=name, grid=grid, spec_hash=spec_hash or default_hash, submission=submission, phase=phase)


def observed(*jobs: ObservedJob) -> dict[str, ObservedJob]:
    return {j.name: j for j in jobs}


def test_first_submission_creates_up_to_parallelism() -> None:
    plan = reconcile(desired(), {})
    assert plan.actions == [Create("train-0"), Create("train-1")]
    assert plan.phase is GridPhase.RUNNING and plan.counts.running == 2 and plan.counts.waiting == 2


def test_parallelism_counts_running_jobs() -> None:
    plan = reconcile(desired(), observed(job("train-0", JobPhase.RUNNING), job("train-1", JobPhase.SUCCEEDED)))
    assert plan.actions == [Create("train-2")] and plan.phase is GridPhase.RUNNING


def test_a_failed_point_is_terminal_within_its_submission() -> None:
    jobs = observed(*(job(f"train-{i}", JobPhase.SUCCEEDED) for i in range(3)), job("train-3", JobPhase.FAILED))
    plan = reconcile(desired(), jobs)
    assert plan.actions == [Create("finalize-lab", finalizer=True)]
    assert plan.counts.failed == 1 and plan.phase is GridPhase.FINALIZING


def test_failure_budget_stops_new_jobs_and_finalizes_with_what_there_is() -> None:
    jobs = observed(job("train-0", JobPhase.FAILED), job("train-1", JobPhase.FAILED))
    plan = reconcile(desired(failure_budget=1), jobs)
    assert plan.actions == [Create("finalize-lab", finalizer=True)]
    assert plan.counts.skipped == 2 and "failure budget spent" in plan.message
    running = observed(
        job("train-0", JobPhase.FAILED), job("train-1", JobPhase.FAILED), job("train-2", JobPhase.RUNNING)
    )
    assert reconcile(desired(failure_budget=1), running).actions == []


def test_finalizer_is_created_exactly_once() -> None:
    done = [job(f"train-{i}", JobPhase.SUCCEEDED) for i in range(4)]
    assert reconcile(desired(), observed(*done)).creates == [Create("finalize-lab", finalizer=True)]
    running = reconcile(desired(), observed(*done, job("finalize-lab", JobPhase.RUNNING)))
    assert running.actions == [] and running.phase is GridPhase.FINALIZING
    succeeded = reconcile(desired(), observed(*done, job("finalize-lab", JobPhase.SUCCEEDED)))
    assert succeeded.actions == [] and succeeded.phase is GridPhase.SUCCEEDED


def test_finalizer_failed_fails_the_grid() -> None:
    done = [job(f"train-{i}", JobPhase.SUCCEEDED) for i in range(4)]
    plan = reconcile(desired(), observed(*done, job("finalize-lab", JobPhase.FAILED)))
    assert plan.actions == [] and plan.phase is GridPhase.FAILED


def test_unchanged_finished_grid_needs_nothing() -> None:
    done = observed(
        *(job(f"train-{i}", JobPhase.SUCCEEDED, submission="run1") for i in range(4)),
        job("finalize-lab", JobPhase.SUCCEEDED, submission="run1"),
    )
    assert is_up_to_date(desired(), done)
    assert not is_up_to_date(desired(finalizer=DesiredJob("finalize-lab", "other")), done)


def test_resubmission_retries_failed_points_and_keeps_finished_ones() -> None:
    jobs = observed(
        job("train-0", JobPhase.SUCCEEDED, submission="run1"),
        job("train-1", JobPhase.FAILED, submission="run1"),
        job("train-2", JobPhase.SUCCEEDED, submission="run1"),
        job("train-3", JobPhase.SUCCEEDED, submission="run1"),
        job("finalize-lab", JobPhase.SUCCEEDED, submission="run1"),
    )
    assert not is_up_to_date(desired(), jobs)
    plan = reconcile(desired(), jobs)
    assert plan.actions == [Delete("train-1", "failed in an earlier submission: retrying")]
    del jobs["train-1"]
    assert reconcile(desired(), jobs).actions == [Create("train-1")]


def test_changed_grid_reruns_only_changed_points() -> None:
    jobs = observed(*(job(f"train-{i}", JobPhase.SUCCEEDED, submission="run1") for i in range(4)))
    changed = desired(points=(POINTS[0], DesiredJob("train-1", "new"), *POINTS[2:]))
    plan = reconcile(changed, jobs)
    assert [type(a) for a in plan.actions] == [Delete] and plan.actions[0].name == "train-1"


def test_finalizer_of_an_earlier_submission_is_replaced() -> None:
    done = [job(f"train-{i}", JobPhase.SUCCEEDED) for i in range(4)]
    plan = reconcile(desired(), observed(*done, job("finalize-lab", JobPhase.SUCCEEDED, submission="run1")))
    assert plan.actions == [Delete("finalize-lab", "finalizer of an earlier submission")]


def test_name_used_by_another_grid_is_refused() -> None:
    plan = reconcile(desired(), observed(job("train-0", JobPhase.RUNNING, grid="other")))
    assert Conflict("train-0", "other") in plan.actions
    assert Create("train-0") not in plan.actions


def test_a_blocked_name_holds_the_grid_instead_of_finalizing_without_it() -> None:
    """Nothing new starts, and above all no finalizer deciding without the blocked point; the grid
    goes on once the name is free (the other grid's Job deleted)."""
    done = [job(f"train-{i}", JobPhase.SUCCEEDED) for i in range(1, 4)]
    plan = reconcile(desired(), observed(job("train-0", JobPhase.SUCCEEDED, grid="other"), *done))
    assert plan.actions == [Conflict("train-0", "other")] and plan.phase is GridPhase.PENDING
    assert (plan.counts.succeeded, plan.counts.failed, plan.counts.waiting) == (3, 0, 1)
    assert "blocked" in plan.message
    assert reconcile(desired(), observed(*done)).actions == [Create("train-0")]


def test_controller_restart_adopts_existing_jobs() -> None:
    jobs = observed(job("train-0", JobPhase.RUNNING), job("train-1", JobPhase.PENDING))
    plan = reconcile(desired(), jobs)
    assert plan.actions == [] and plan.counts.running == 2
    again = reconcile(desired(), jobs)
    assert again == plan


def test_the_plan_says_each_points_state_as_a_search_counts_it() -> None:
    plan = reconcile(desired(), observed(
        job("train-0", JobPhase.RUNNING),
        job("train-1", JobPhase.FAILED, submission="run1"),  # failed in an earlier submission: retried, in flight
        job("train-2", JobPhase.FAILED),  # failed in this one
        job("train-3", JobPhase.SUCCEEDED)))
    assert plan.states == {"train-0": "active", "train-1": "active", "train-2": "failed", "train-3": "succeeded"}
    assert plan.in_flight() == {"train-0", "train-1"} and plan.failed() == {"train-2"}
    blocked = reconcile(desired(), observed(job("train-0", JobPhase.RUNNING, grid="other")))
    assert blocked.states["train-0"] == "blocked" and blocked.in_flight() == {f"train-{i}" for i in range(4)}


def test_the_plan_says_when_the_failure_budget_is_spent() -> None:
    two_failed = observed(job("train-0", JobPhase.FAILED), job("train-1", JobPhase.FAILED))
    assert not reconcile(desired(failure_budget=2), two_failed).budget_spent
    spent = reconcile(desired(failure_budget=1), two_failed)
    assert spent.budget_spent and spent.counts.skipped == 2 and spent.creates == [Create(FINAL.name, finalizer=True)]
    # spent with no point left to skip (the budget, not the skipped count, says it: a search asks no more)
    last = observed(job("train-0", JobPhase.FAILED), job("train-1", JobPhase.FAILED))
    assert reconcile(desired(points=POINTS[:2], failure_budget=1, pending=True), last).budget_spent
