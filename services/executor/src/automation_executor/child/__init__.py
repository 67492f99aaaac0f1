"""The child process that runs one execution's steps: ``python -m automation_executor.child``.

It reads a :class:`~automation_executor.domain.protocol.ChildSpec` as the first line of its stdin,
applies its resource limits to itself (so every command it starts inherits them), runs the check step
and the steps in order and reports on stdout in JSON lines (see :mod:`automation_executor.domain.protocol`).
Its stdin stays open as the bridge's return path: secrets, event publishing and browser tasks are asked
of the executor (:mod:`.bridge`). It runs in its own session and process group, so the executor can stop
it and every command it started with one signal. Each step kind's runner module (:mod:`.shell`,
:mod:`.http`, :mod:`.python_step`, :mod:`.events`, :mod:`.browser`, :mod:`.ssh`, :mod:`.winrm`) is
imported when a step of that kind first runs.
"""
