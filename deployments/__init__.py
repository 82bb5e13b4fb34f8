"""The runtime: `slipway up`, serving the deployments of prefect.yaml, and the CLI."""
