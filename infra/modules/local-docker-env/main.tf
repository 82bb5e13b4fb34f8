# The local Docker deploy target needs no provider: the resolved configuration
# lives in state as a terraform_data resource, so a plan shows exactly which
# setting changes, drift detection can compare it, and it works offline.

terraform {
  required_version = ">= 1.5"
}

locals {
  container_name = "${var.service}-${var.environment}"
}

resource "terraform_data" "environment" {
  input = {
    service        = var.service
    environment    = var.environment
    port           = var.port
    replicas       = var.replicas
    container_name = local.container_name
    env_vars       = var.env_vars
  }
}

# Which Secret blocks the containers read, by name only; absent while there are
# none, so environments provisioned before secret_env existed plan no change.
resource "terraform_data" "secret_env" {
  count = length(var.secret_env) > 0 ? 1 : 0
  input = var.secret_env
}
