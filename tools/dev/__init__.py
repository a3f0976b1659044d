"""The local stack: backends (Apache Kafka, a MongoDB server, FerretDB, PostgreSQL), the three services as
processes (`make run`), mail and SMS sinks, and the roomy policies the suites run with."""
