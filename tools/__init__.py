"""What the project runs besides the services: ``dev`` (the local stack: ``make run``, the test backends, sinks),
``deploy`` (deployment helpers: secrets), ``generate`` (generated documents: AsyncAPI) and ``check`` (checks
``make`` runs: the dependency audit, mutation testing). The fault suite is a test suite: ``tests/faults``."""
