"""Pure logic of the gateway: no I/O, no framework.

- :mod:`.routing`: routing-key validity and AMQP topic patterns as regular expressions.
- :mod:`.envelope`: checking an event's envelope, who may produce it, and whether it can be stored.
- :mod:`.binding`: the CloudEvents HTTP protocol binding (structured, batch and binary modes).
- :mod:`.schemas`: checking registered JSON Schemas and validating event data against them.
- :mod:`.cursor`: opaque pagination cursors.
"""
