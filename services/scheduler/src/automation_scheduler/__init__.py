"""The scheduler service: the platform's trigger engine.

It keeps one schedule row per job (fed by ``job.*`` events), sleeps until the earliest due fire time,
and fires each due slot exactly once across replicas by writing a fire record and an outbox
``run.requested`` in one transaction.
"""
