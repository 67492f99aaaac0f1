"""A fork server (zygote): one pre-imported helper process per replica that forks each execution's child.

Starting ``python -m automation_executor.child`` costs 0.3-0.5 s, nearly all of it imports. The fork
server imports the child's modules once, then forks a child per execution on request: the child gets a
fresh session and process group, the execution's working directory and exact environment, and the
three pipes the executor made (handed over with ``SCM_RIGHTS``), then runs the same
``automation_executor.child.main.main()`` as a spawned child would (which applies the resource limits).

- :mod:`.server`: the helper process (``python -P -m automation_executor.forkserver <fd> [module ...]``);
- :mod:`.client`: :class:`~.client.ForkServer`, the executor's asyncio side.

The helper is the parent of every child it forks: it reaps them and reports their exit status. When
the executor goes away (its end of the socket closes, e.g. SIGKILL), the helper kills the process
group of every child still running and exits, so no orphaned run survives its executor.
"""
