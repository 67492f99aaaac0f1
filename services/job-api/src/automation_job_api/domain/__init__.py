"""Pure logic of job-api (no I/O): API keys, cursors, job definitions, run parameters, execution state."""
