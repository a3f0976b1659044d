"""Deployment helpers: `python3 -m tools.deploy.secrets` writes a new deployment's ./secrets."""
