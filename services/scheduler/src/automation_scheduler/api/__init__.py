"""The scheduler's HTTP API under ``/api/v1`` (thin routers over the read queries and the schedule library)."""
