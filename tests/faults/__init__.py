"""The fault suite (`make faults`; `make test` runs `--quick`): the services as processes under SIGKILL, broker,
store and mail outages, counted for loss and duplicates. `python -m tests.faults --help`."""
