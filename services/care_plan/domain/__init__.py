"""Care-plan rules: pure functions over plain data, no I/O."""
