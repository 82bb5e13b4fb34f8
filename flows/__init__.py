"""The platform's capabilities: one module per flow family.

Each flow is a short story of task calls; the tasks in `tasks/` do the talking
to git, Docker, Terraform, storage and scanners.
"""
