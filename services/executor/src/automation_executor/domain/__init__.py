"""Pure executor logic (no I/O): step configs, templates, backoff, log caps, the child protocol."""
