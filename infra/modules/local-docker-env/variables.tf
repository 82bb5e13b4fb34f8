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
