"""The chaos suite (issue 9): the real processes on loopback, a seeded workload, faults on a seeded
schedule, then invariants checked against the exchange's ledger and the database.

`python -m chaos --help`; README, "Chaos suite". Development and test tooling: not installed with
the service's packages.
"""
