"""Generation.greeted: what each new connection's greeting reply decides."""

from __future__ import annotations

import logging

import pytest

from gateway.limits.redis_generation import Generation, never_checkable
from gateway.limits.resp import RespError


def recorded() -> tuple[Generation, list[int]]:
    changes: list[int] = []
    return Generation(changes.append), changes


def test_the_same_generation_lets_every_command_go() -> None:
    generation, changes = recorded()
    assert generation.greeted(0) and generation.greeted(0) and generation.greeted(b"0")
    assert generation.value == 0 and generation.known and changes == []


def test_a_new_generation_is_learned_and_stops_the_commands_made_before() -> None:
    generation, changes = recorded()
    assert generation.greeted(0)
    assert not generation.greeted(1)  # a restart with data, a restore, a failover
    assert generation.value == 1 and changes == [1]
    assert generation.greeted(1)  # the next connections: the same server
    assert changes == [1]


def test_a_first_answer_other_than_0_stops_what_was_made_before_it() -> None:
    """Before any connection answered, commands name generation 0."""
    generation, changes = recorded()
    assert not generation.known
    assert not generation.greeted(3)
    assert generation.value == 3 and changes == [3]


def test_a_refused_greeting_keeps_the_generation_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    generation, changes = recorded()
    assert generation.greeted(2) is False
    with caplog.at_level(logging.WARNING, logger="gateway.limits"):
        assert generation.greeted(RespError("NOPERM this user has no permissions"))
        assert generation.greeted(RespError("NOPERM this user has no permissions"))
    assert generation.value == 2 and changes == [2]
    assert [r.message for r in caplog.records].count(
        "limits: Redis refused the generation check; a Redis restored from an older "
        "snapshot will not be noticed"
    ) == 1


@pytest.mark.parametrize(
    "said",
    [
        "LOADING Redis is loading the dataset in memory",  # restarted, its RDB still loading
        "READONLY You can't write against a read only replica.",
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    ],
)
def test_any_other_error_fails_the_connection_and_keeps_nothing(said: str) -> None:
    """A Redis still loading a restored snapshot cannot say its generation yet: taken as
    a refusal, the connection would go on with the keys of the generation before."""
    generation, changes = recorded()
    assert generation.greeted(0)
    with pytest.raises(ConnectionError, match="cannot run the generation check"):
        generation.greeted(RespError(said))
    assert generation.value == 0 and changes == []


@pytest.mark.parametrize(
    "said",
    [
        "NOPERM this user has no permissions to run the 'eval' command",
        "ERR The user executing the script can't run this command or subcommand script: ab",
        "NOPERM User gw has no permissions to run the 'info' command",
    ],
)
def test_an_acls_refusal_is_told_apart(said: str) -> None:
    assert never_checkable(RespError(said))
    assert not never_checkable(RespError("LOADING Redis is loading the dataset in memory"))


def test_a_command_renamed_away_or_no_run_id_is_never_checkable() -> None:
    """`rename-command INFO ""`, or a Redis-compatible server whose INFO names no run_id
    (the script answers -1): the generation stays, as before generations existed."""
    assert never_checkable(RespError("ERR Unknown Redis command called from script script: ab"))
    generation, changes = recorded()
    assert generation.greeted(-1) and generation.greeted(-1)
    assert generation.value == 0 and changes == []
