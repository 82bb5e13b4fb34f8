"""What a drift check reads from a saved plan instead of asking Terraform's ``show``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from blocks.terraform_backend import TerraformBackend
from tasks.terraform import Terraform, Workspace, assess
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
        runner: Runner, directory: Path, commands: Sequence[tuple[Sequence[str], bool]]
    ) -> list[CommandOutcome]:
        ran.extend(argv[0] for argv, _ in commands)
        return batch(runner, directory, commands)

    monkeypatch.setattr(Runner, "batch", recorded)
    with tf.reusing_processes():
        health = assess(tf, ws, VARS, name="check")
    assert ran == ["plan", "plan"]
    assert health.in_sync and len(health.resources) == 6
    assert health.outputs["keyed"].value == {"a": "a", "b c": "b c", 'dé"q': 'dé"q'}

    ran.clear()
    with tf.reusing_processes():
        health = assess(tf, ws, {**VARS, "names": ["a"]}, name="check")
    assert ran == ["plan", "plan", "show"]  # the pending plan is shown, the refresh is read
    assert health.reasons == ("configuration not applied: 0 to add, 0 to change, 2 to destroy",)
    assert len(health.resources) == 6

    ran.clear()
    never = tf.workspace(ws.module, "payments", "qa")  # its refresh finds outputs to create
    with tf.reusing_processes():
        health = assess(tf, never, VARS, name="check")
    assert ran == ["plan", "plan", "show", "show"]  # both shown: the refresh found a change
    assert health.resources == () and health.reasons[0].startswith("Terraform state has no")
