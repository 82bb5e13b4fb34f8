"""The platform's capabilities: one module per flow family.

Each flow is a short story of task calls; the tasks in `tasks/` do the talking
to git, Docker, Terraform, storage and scanners.
"""

from slipway import heartbeats

# Before any flow of ours runs, in every process that runs one (served, pooled or called).
heartbeats.apply()
