"""Checks `make` runs: the dependency audit (`make audit`) and mutation testing (`make mutate`)."""
