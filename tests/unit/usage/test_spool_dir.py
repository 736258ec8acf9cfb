"""Where the ledger spool lives, which other folders hold rows no start replays, and the
writer's settings (usage/spool.py, settings.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import SettingsError, load_settings
from gateway.usage.spool import (
    SpoolFolder,
    default_spool_dir,
    encode_rows,
    spool_base,
    spool_folders,
    stranded,
)
from tests.support.ledger_rows import ledger_row


def test_a_sqlite_database_spools_next_to_its_file(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/data/gw.db"
    assert default_spool_dir(url, None) == tmp_path / "data" / "gw.db.ledger-spool"


def test_a_relative_sqlite_file_spools_next_to_it_as_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_spool_dir("sqlite+aiosqlite:///./gateway.db", None) == (
        tmp_path / "gateway.db.ledger-spool"
    )


def test_postgresql_spools_under_the_working_directory_one_folder_per_database(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    one = default_spool_dir("postgresql+asyncpg://u:secret@db:5432/billing", None)
    other = default_spool_dir("postgresql+asyncpg://u:secret@db:5432/staging", None)
    assert one == tmp_path / "ledger-spool" / "db-5432-billing"
    assert one != other
    assert "secret" not in str(one)  # the password never names a folder


def test_the_configured_folder_still_separates_databases(tmp_path):
    url = "postgresql+asyncpg://u:p@10.0.0.5/ledger"
    assert default_spool_dir(url, str(tmp_path)) == tmp_path / "10.0.0.5--ledger"
    sqlite = default_spool_dir("sqlite:////var/lib/gw/gateway.db", str(tmp_path))
    assert sqlite.parent == tmp_path and "gateway.db" in sqlite.name


def test_odd_characters_in_a_database_name_stay_inside_the_folder(tmp_path):
    spool = default_spool_dir("postgresql://u:p@h/..%2F..%2Fetc", str(tmp_path))
    assert spool.parent == tmp_path
    assert default_spool_dir("postgresql:///..", str(tmp_path)).parent == tmp_path


def test_the_ledger_settings_come_from_the_environment():
    settings = load_settings(
        {"GATEWAY_LEDGER_SPOOL_DIR": "/srv/spool", "GATEWAY_LEDGER_QUEUE_ROWS": "500"}
    )
    assert (settings.ledger_spool_dir, settings.ledger_queue_rows) == ("/srv/spool", 500)
    assert load_settings({}).ledger_spool_dir is None


@pytest.mark.parametrize("value", ["0", "-3", "lots", str(10**8)])
def test_a_queue_bound_the_writer_cannot_use_is_refused_by_name(value):
    with pytest.raises(SettingsError, match="GATEWAY_LEDGER_QUEUE_ROWS"):
        load_settings({"GATEWAY_LEDGER_QUEUE_ROWS": value})


def test_an_empty_spool_dir_setting_means_the_default():
    assert load_settings({"GATEWAY_LEDGER_SPOOL_DIR": ""}).ledger_spool_dir is None
    assert isinstance(default_spool_dir("sqlite:///x.db", None), Path)


def test_every_database_folder_is_under_one_base_the_sqlite_default_beside_its_file(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    assert spool_base(None) == tmp_path / "ledger-spool"
    assert spool_base("") == tmp_path / "ledger-spool"
    assert spool_base("s1") == tmp_path / "s1"
    for url in ("postgresql+asyncpg://u:p@db:6432/billing", "sqlite:////var/lib/gw/gateway.db"):
        assert default_spool_dir(url, "s1").parent == spool_base("s1")
    assert default_spool_dir("postgresql://u:p@db/x", None).parent == spool_base(None)
    assert default_spool_dir("sqlite:///gw.db", None).parent != spool_base(None)


OWN = Path("/spool/127.0.0.1-5432-probe3")


@pytest.mark.parametrize(
    ("folders", "expected"),
    [
        ([], []),
        ([SpoolFolder(OWN, 3, 20)], []),  # its own: replayed, not stranded
        ([SpoolFolder(Path("/spool/127.0.0.1-47202-probe3"), 1, 20)], ["127.0.0.1-47202-probe3"]),
        ([SpoolFolder(Path("/spool/db-5432-probe3"), 0, 0)], []),  # nothing there
        ([SpoolFolder(Path("/spool/db-5432-probe3"), 2, 0)], []),  # files, emptied
        (
            [
                SpoolFolder(Path("/spool/z-1-a"), 1, 1),
                SpoolFolder(OWN, 1, 5),
                SpoolFolder(Path("/spool/a-1-a"), 4, 9),
            ],
            ["a-1-a", "z-1-a"],
        ),
    ],
)
def test_only_other_folders_that_hold_rows_are_stranded(folders, expected):
    assert [folder.path.name for folder in stranded(OWN, folders)] == expected


def test_a_folder_counts_its_spool_files_and_whole_rows_nothing_else(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "ledger-1-aa.jsonl").write_bytes(encode_rows([ledger_row(), ledger_row()]))
    (tmp_path / "a" / "ledger-2-bb.jsonl").write_bytes(encode_rows([ledger_row()]) + b'{"cut')
    (tmp_path / "a" / "rejected.jsonl").write_bytes(b"{}\n{}\n")
    (tmp_path / "b").mkdir()
    (tmp_path / "stray.jsonl").write_bytes(b"{}\n")
    found = sorted(spool_folders(tmp_path), key=lambda folder: folder.path)
    assert found == [SpoolFolder(tmp_path / "a", 2, 3), SpoolFolder(tmp_path / "b", 0, 0)]
    assert spool_folders(tmp_path / "missing") == []
