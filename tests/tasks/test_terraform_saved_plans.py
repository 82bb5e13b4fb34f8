"""What a drift check reads from a saved plan instead of asking Terraform's ``show``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from blocks.terraform_backend import TerraformBackend
from tasks.terraform import Terraform, Variables, Workspace, assess
from tasks.terraform.models import saved_prior_state
from tasks.terraform.runner import CommandOutcome, Runner

MAIN = """
variable "names" {
  type = set(string)
}

variable "secret" {
  type      = string
  sensitive = true
}

resource "terraform_data" "counted" {
  count = 2
  input = count.index
}

resource "terraform_data" "keyed" {
  for_each = var.names
  input    = each.key
}

module "child" {
  source = "./child"
}

output "secret" {
  value     = var.secret
  sensitive = true
}

output "keyed" {
  value = { for name, data in terraform_data.keyed : name => data.output }
}

output "inputs" { # known in a normal plan: its view of state differs from a refresh's
  value = sort([for data in terraform_data.keyed : data.input])
}
"""
VARS = {"names": ["a", "b c", 'dé"q'], "secret": "s3cr3t"}


@pytest.fixture
def applied(tmp_path: Path) -> tuple[Terraform, Workspace]:
    """An environment of counted, keyed and child-module resources, applied with local state."""
    module = tmp_path / "module"
    (module / "child").mkdir(parents=True)
    (module / "main.tf").write_text(MAIN)
    (module / "child" / "main.tf").write_text('resource "terraform_data" "inner" {\n}\n')
    backend = TerraformBackend(kind="local", state_dir=tmp_path / "state")
    tf = Terraform(backend, workspaces=tmp_path / "workspaces")
    ws = tf.workspace(module, "payments", "dev")
    tf.apply(ws, tf.plan(ws, VARS))
    return tf, ws


def test_a_saved_plan_holds_the_state_that_show_prints_as_prior_state(
    applied: tuple[Terraform, Workspace], tmp_path: Path
):
    tf, ws = applied
    shown = tf.plan(ws, VARS, refresh_only=True, name="r")  # summarized from `show -json`
    assert shown.prior is not None and len(shown.prior.resources) == 6
    assert saved_prior_state(shown.plan_file) == shown.prior
    assert shown.prior.outputs["secret"].sensitive

    fresh = tf.workspace(ws.module, "payments", "qa")  # never applied: no resources in state
    empty = tf.plan(fresh, VARS, refresh_only=True, name="r")
    assert empty.prior is not None and empty.prior.resources == ()
    assert saved_prior_state(empty.plan_file) == empty.prior

    (tmp_path / "not-a-plan.tfplan").write_text("{}")
    assert saved_prior_state(tmp_path / "not-a-plan.tfplan") is None


def test_an_environment_in_sync_is_checked_without_a_show_and_a_changed_one_with_it(
    applied: tuple[Terraform, Workspace], monkeypatch: pytest.MonkeyPatch
):
    tf, ws = applied
    ran: list[str] = []
    batch = Runner.batch

    def recorded(
        runner: Runner,
        directory: Path,
        commands: Sequence[tuple[Sequence[str], bool]],
        **options: bool,
    ) -> list[CommandOutcome]:
        done = batch(runner, directory, commands, **options)
        ran.extend(argv[0] for argv, _ in commands[: len(done)])  # only those that ran
        return done

    monkeypatch.setattr(Runner, "batch", recorded)
    with tf.reusing_processes():
        health = assess(tf, ws, VARS, name="check")
    assert ran == ["plan"]  # nothing to do and nothing refreshed: no refresh-only plan
    assert health.in_sync and len(health.resources) == 6
    assert health.outputs["keyed"].value == {"a": "a", "b c": "b c", 'dé"q': 'dé"q'}

    ran.clear()
    with tf.reusing_processes():
        health = assess(tf, ws, {**VARS, "names": ["a"]}, name="check")
    assert ran == ["plan", "plan", "show"]  # the pending plan is shown, the refresh is read
    assert health.outputs["inputs"].value == sorted(VARS["names"])  # what state holds
    assert health.reasons == ("configuration not applied: 0 to add, 0 to change, 2 to destroy",)
    assert len(health.resources) == 6

    ran.clear()
    never = tf.workspace(ws.module, "payments", "qa")  # its refresh finds outputs to create
    with tf.reusing_processes():
        health = assess(tf, never, VARS, name="check")
    assert ran == ["plan", "plan", "show", "show"]  # both shown: the refresh found a change
    assert health.resources == () and health.reasons[0].startswith("Terraform state has no")


def separately(tf: Terraform, ws: Workspace, variables: Variables) -> tuple[object, ...]:
    """What a check finds with both plans run and shown every time (the check before this one)."""
    refresh = tf.plan(ws, variables, refresh_only=True, name="old-refresh")
    normal = tf.plan(ws, variables, name="old")
    drift = refresh.summary.drift if refresh.has_changes else ()
    return refresh.has_changes, drift, refresh.prior, normal.has_changes, normal.summary


def together(tf: Terraform, ws: Workspace, variables: Variables) -> tuple[object, ...]:
    refresh, normal = tf.check_plans(ws, variables, name="check")
    drift = refresh.summary.drift if refresh.has_changes else ()
    return refresh.has_changes, drift, refresh.prior, normal.has_changes, normal.summary


def test_the_check_finds_what_both_plans_run_every_time_find(
    applied: tuple[Terraform, Workspace], tmp_path: Path
):
    tf, ws = applied
    in_sync = together(tf, ws, VARS)
    assert in_sync == separately(tf, ws, VARS) and not in_sync[0] and not in_sync[3]
    changed = {**VARS, "names": ["a"]}
    assert together(tf, ws, changed) == separately(tf, ws, changed)
    never = tf.workspace(ws.module, "payments", "qa")
    assert together(tf, never, VARS) == separately(tf, never, VARS)

    with (ws.module / "main.tf").open("a") as main:  # an output that was never applied
        main.write('output "count" {\n  value = length(var.names)\n}\n')
    unapplied = together(tf, ws, VARS)
    assert unapplied == separately(tf, ws, VARS) and unapplied[0] and unapplied[3]


def test_a_refresh_that_changes_state_with_nothing_to_plan_runs_the_refresh_only_plan(
    tmp_path: Path,
):
    module = tmp_path / "module"
    module.mkdir()
    (module / "main.tf").write_text(
        'resource "terraform_data" "a" {\n  input = "a"\n}\n\n'
        'resource "terraform_data" "b" {\n  input = terraform_data.a.output\n}\n'
    )
    tf = Terraform(
        TerraformBackend(kind="local", state_dir=tmp_path / "state"),
        workspaces=tmp_path / "workspaces",
    )
    ws = tf.workspace(module, "payments", "dev")
    tf.apply(ws, tf.plan(ws, {}))
    refreshed = ws.directory / "check-refresh.tfplan"
    together(tf, ws, {})
    assert not refreshed.exists()  # in sync: the normal plan alone
    state = tmp_path / "state" / "payments" / "dev.tfstate"
    held = json.loads(state.read_text())
    for resource in held["resources"]:  # refresh writes back what the configuration says
        for instance in resource["instances"]:
            instance.pop("dependencies", None)
    state.write_text(json.dumps(held))
    found = together(tf, ws, {})
    assert refreshed.is_file()  # run after the normal plan, which had nothing to do
    assert found == separately(tf, ws, {})
