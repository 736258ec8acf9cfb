"""What a caller is told about an exception no stage handled (gateway/errors.py)."""

from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from gateway.errors import unexpected


def test_a_database_outage_is_a_retryable_503() -> None:
    for exc in (OperationalError("SELECT 1", {}, OSError("connection refused")), PoolTimeout()):
        error = unexpected(exc)
        assert (error.status, error.code) == (503, "database_unavailable")
        assert error.headers == {"retry-after": "1"}
        assert "connection refused" not in error.message  # no driver text reaches the caller


def test_anything_else_is_a_plain_500() -> None:
    error = unexpected(RuntimeError("secret detail"))
    assert (error.status, error.code, error.message) == (
        500,
        "internal_error",
        "The gateway hit an internal error.",
    )
