"""Intake's clinical rules: pure functions, no I/O."""
