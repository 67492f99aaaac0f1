"""The child process that runs one execution's steps: ``python -m automation_executor.child``.

It reads a :class:`~automation_executor.domain.protocol.ChildSpec` on stdin, applies its resource limits
to itself (so every command it starts inherits them), runs the steps in order and reports on stdout in
JSON lines (see :mod:`automation_executor.domain.protocol`). It runs in its own session and process
group, so the executor can stop it and every command it started with one signal.
"""
