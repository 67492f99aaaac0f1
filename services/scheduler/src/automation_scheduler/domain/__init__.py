"""Pure scheduling logic: no I/O, no clock reads (``now`` is always passed in)."""
