"""Streamed answers: per-chunk steps with no I/O (steps.py, usage_observer.py,
response_ids.py) driven by one async loop (relay.py)."""
