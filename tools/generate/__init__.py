"""Generated documents: `make asyncapi` (`python -m tools.generate.asyncapi --write`)."""
