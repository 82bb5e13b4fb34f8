# The outputs every environment module provides; the deploy step reads these.

output "service" {
  description = "The service this environment runs."
  value       = terraform_data.environment.output.service
}

output "environment" {
  description = "The environment's name."
  value       = terraform_data.environment.output.environment
}

output "port" {
  description = "The host port that the service publishes."
  value       = terraform_data.environment.output.port
}

output "replicas" {
  description = "How many containers run the service."
  value       = terraform_data.environment.output.replicas
}

output "container_name" {
  description = "Name of the (first) container: <service>-<environment>."
  value       = terraform_data.environment.output.container_name
}

output "env_vars" {
  description = "Environment variables of the service's containers."
  value       = terraform_data.environment.output.env_vars
}
