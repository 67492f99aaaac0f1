"""automation-event-gateway: HTTP ingress for CloudEvents, event history and a small schema registry.

Events arrive over HTTP (CloudEvents 1.0 HTTP binding: structured, batch and binary modes) or are seen on
``automation.events``; every event is stored once, keyed by (source, id). Events posted over HTTP are
published to ``automation.events`` through the outbox with their type as routing key.
"""
