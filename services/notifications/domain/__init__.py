"""Which message goes to whom for which event: pure rules, no I/O."""
