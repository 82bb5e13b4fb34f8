# The inputs every environment module takes. A module for another target (AWS,
# say) must declare at least these, with the same types, to swap in unchanged.

variable "service" {
  description = "The service's DNS-label name, e.g. payments-api."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.service)) && length(var.service) <= 63
    error_message = "The service must be a DNS-1123 label: lower-case letters, digits and '-'."
  }
}

variable "environment" {
  description = "The environment's DNS-label name: dev, prod or preview-<branch>."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.environment)) && length(var.environment) <= 63
    error_message = "The environment must be a DNS-1123 label: lower-case letters, digits and '-'."
  }
}

variable "port" {
  description = "The host port that the service's container publishes."
  type        = number

  validation {
    condition     = var.port >= 1024 && var.port <= 65535 && floor(var.port) == var.port
    error_message = "The port must be a whole number from 1024 to 65535."
  }
}

variable "replicas" {
  description = "How many containers run the service."
  type        = number
  default     = 1

  validation {
    condition     = var.replicas >= 0 && var.replicas <= 20 && floor(var.replicas) == var.replicas
    error_message = "The replicas must be a whole number from 0 to 20."
  }
}

variable "env_vars" {
  description = "Environment variables of the service's containers."
  type        = map(string)
  default     = {}
}

variable "secret_env" {
  description = "Secret environment variables of the service's containers: each variable's name to the name of the Prefect Secret block that holds its value. Only the names reach Terraform; the release reads the values when it starts a container."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for name, block in var.secret_env :
      can(regex("^[A-Za-z_][A-Za-z0-9_]*$", name)) && can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", block))
    ])
    error_message = "Each secret_env entry maps a variable name to the name of a Secret block (lower-case letters, digits and '-'), never to a value."
  }
}
