"""Example ``python`` step handlers, shipped with the executor for its tests and docs.

The manifest below declares the handlers of :mod:`automation_executor.examples.handlers` that jobs may
call; :func:`automation_executor.examples.handlers.undeclared` is left out on purpose (the executor
refuses it). :mod:`automation_executor.examples.entry_point` is declared the other way, in the
``automation-handlers`` entry points of the executor's distribution (``pyproject.toml``).
"""

automation_handlers = [
    "automation_executor.examples.handlers:noop",
    "automation_executor.examples.handlers:greet",
    "automation_executor.examples.handlers:echo_args",
    "automation_executor.examples.handlers:fetch_status",
    "automation_executor.examples.handlers:emit_event",
    "automation_executor.examples.handlers:page_title",
    "automation_executor.examples.handlers:use_secret",
    "automation_executor.examples.handlers:inventory_check",
    "automation_executor.examples.handlers:fail",
    "automation_executor.examples.handlers:not_json",
    "automation_executor.examples.handlers:sleep",
    "automation_executor.examples.handlers:where",
    "automation_executor.examples.handlers:loaded",
]
