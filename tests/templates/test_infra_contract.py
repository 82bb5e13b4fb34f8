"""The template's infra/ and the platform's environment module must fit together.

Real Terraform plans a rendered service's infra/ against infra/modules/local-docker-env:
a variable the module does not declare, or one it requires and is not given,
fails here rather than at a service's first provisioning.
"""

from __future__ import annotations

from pathlib import Path

from blocks.terraform_backend import TerraformBackend
from tasks.templates import ServiceAnswers, render_service
from tasks.terraform import Terraform

MODULE = Path(__file__).resolve().parents[2] / "infra" / "modules" / "local-docker-env"


def test_rendered_infra_plans_one_environment_per_answer_with_the_platform_module(tmp_path):
    answers = ServiceAnswers(
        service_name="payments",
        description="Payments",
        owner="team-payments",
        port=8123,
        environments=["dev", "staging"],
        infra_module_source=str(MODULE),
    )
    service = render_service("python-service", tmp_path / "payments", answers)
    terraform = Terraform(
        TerraformBackend(kind="local", state_dir=tmp_path / "state"),
        workspaces=tmp_path / "workspaces",
    )
    workspace = terraform.workspace(service.path / "infra", "payments", "all")
    plan = terraform.plan(workspace, {})
    assert plan.has_changes
    assert sorted(plan.summary.adds) == [
        'module.environment["dev"].terraform_data.environment',
        'module.environment["staging"].terraform_data.environment',
    ]
