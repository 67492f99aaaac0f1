"""The executor service: the worker pool that runs jobs' steps in isolated child processes.

It consumes ``run.requested`` from ``executor.runs``, records each attempt in its ``executor`` schema,
runs the steps in one child process per execution (``python -m automation_executor.child``), streams
their output as ``execution.log`` and finishes with ``execution.succeeded|failed|timed_out``, retrying
through the ``automation.retry`` delay queues.
"""
