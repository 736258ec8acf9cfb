"""Test helpers shared by the integration tests (servers started on 127.0.0.1, port 0)."""
