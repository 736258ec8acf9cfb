"""Finance's report as a user gets it: `GET /finance/reports/usage` and `gateway report usage`
give the same bytes; bad input is refused on both; `-o` writes whole files or nothing."""

import csv
import io
import json
import os
import pty
import subprocess
from pathlib import Path

import pytest

from tests.support.admin import ADMIN_POLICY
from tests.support.gateway import running_gateway
from tests.support.ledger_rows import at_ms, insert_rows, ledger_row, priced_row, prices
from tests.support.processes import GATEWAY

TENTHS = prices(100_000_000, 200_000_000)


def ledger():
    rows = [
        priced_row(
            TENTHS,
            team=("search", "ads")[n % 2],
            model=("small", "large")[n % 3 % 2],
            at_ms=at_ms(2026, 1, 1 + n % 28),
            input_tokens=n * 11,
            output_tokens=n,
            status=(200, 429)[n % 4 == 0],
        )
        for n in range(40)
    ]
    rows.append(
        ledger_row(
            team="ads",
            model="mystery",
            deployment="vllm/mystery",
            price_source="unknown",
            input_tokens=9,
        )
    )
    return rows


def cli(tmp_path: Path, *args: str, stderr=subprocess.PIPE) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/gateway.db"}
    return subprocess.run(
        [GATEWAY, "report", "usage", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        timeout=120,
        check=False,
    )


async def get(http, gw, token, query):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with http.get(f"{gw.origin}/finance/reports/usage{query}", headers=headers) as response:
        return response.status, response.headers, await response.read()


@pytest.fixture
async def gateway(tmp_path):
    async with running_gateway(tmp_path, ADMIN_POLICY) as gw:
        await insert_rows(gw.services.engine, ledger())
        yield gw


async def test_http_bytes_equal_cli_bytes(gateway, tmp_path, http):
    """For every format and a few groupings, the API's body is the CLI's stdout, byte for byte."""
    token = await gateway.token(scopes=["gateway:finance"])
    for format, group_by in [
        ("csv", "team,model"),
        ("json", "team,model"),
        ("focus", "team,model"),
        ("csv", "day,provider"),
        ("json", "subject"),
    ]:
        status, headers, body = await get(
            http, gateway, token, f"?month=2026-01&format={format}&group_by={group_by}"
        )
        assert status == 200, body
        ran = cli(tmp_path, "--month", "2026-01", "--format", format, "--group-by", group_by)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout == body, (format, group_by)
        assert b"mystery" in ran.stderr  # the unpriced model, warned on stderr
        assert headers["x-gateway-report-warnings"] == "1"
    status, headers, body = await get(http, gateway, token, "?month=2026-01")
    assert (status, headers["content-type"]) == (200, "text/csv; charset=utf-8")
    assert headers["content-disposition"] == 'attachment; filename="usage-2026-01.csv"'
    assert body == cli(tmp_path, "--month", "2026-01").stdout
    assert body.startswith(b"month,team,model,requests,errors,")
    document = json.loads((await get(http, gateway, token, "?month=2026-01&format=json"))[2])
    assert document["totals"]["requests"] == 41
    assert [w["model"] for w in document["warnings"]] == ["mystery"]


async def test_a_repeated_group_by_means_all_its_keys_on_both(gateway, tmp_path, http):
    """`group_by=team&group_by=model` and `--group-by team --group-by model` are
    `team,model`, the same bytes (each kept only the last key, `model`, before)."""
    token = await gateway.token(scopes=["gateway:finance"])
    _, _, combined = await get(http, gateway, token, "?month=2026-01&group_by=team,model")
    status, _, body = await get(http, gateway, token, "?month=2026-01&group_by=team&group_by=model")
    assert (status, body) == (200, combined)
    assert body.startswith(b"month,team,model,requests,")
    ran = cli(tmp_path, "--month", "2026-01", "--group-by", "team", "--group-by", "model")
    assert (ran.returncode, ran.stdout) == (0, combined), ran.stderr
    ran = cli(tmp_path, "--month", "2026-01", "--group-by", "day", "--group-by", "team,model")
    assert ran.stdout.startswith(b"month,day,team,model,requests,"), ran.stderr


async def test_finance_or_admin_scope_required(gateway, http):
    """No token: 401. An invoke-only token: 403 insufficient_scope. Finance or admin: 200."""
    status, _, body = await get(http, gateway, None, "?month=2026-01")
    assert status == 401, body
    status, headers, body = await get(http, gateway, await gateway.token(), "?month=2026-01")
    assert status == 403
    assert json.loads(body)["error"]["code"] == "insufficient_scope"
    assert "insufficient_scope" in headers["www-authenticate"]
    for scope in ("gateway:finance", "gateway:admin"):
        status, _, _ = await get(
            http, gateway, await gateway.token(scopes=[scope]), "?month=2026-01"
        )
        assert status == 200


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("?month=2026-1", "month"),
        ("?month=January", "month"),
        ("?month=2999-01", "month"),
        ("", "month"),
        ("?month=2026-01&group_by=team,colour", "group_by"),
        ("?month=2026-01&group_by=team,team", "group_by"),
        ("?month=2026-01&format=xlsx", "format"),
        ("?month=2026-01&group-by=team", "group-by"),
        # Repeated: one of two reports would be answered (it was the last, silently).
        ("?month=2026-12&month=2026-11", "month"),
        ("?month=2026-01&format=csv&format=json", "format"),
        ("?month=2026-01&group_by=team&group_by=team", "group_by"),
    ],
)
async def test_bad_queries_are_400_naming_the_parameter(gateway, http, query, param):
    status, _, body = await get(
        http, gateway, await gateway.token(scopes=["gateway:finance"]), query
    )
    assert status == 400, body
    error = json.loads(body)["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--month", "2026-1"], "YYYY-MM"),
        (["--month", "2999-01"], "not begun"),
        (["--month", "1969-12"], "before 1970-01"),
        (["--month", "2026-01", "--group-by", "team,colour"], "unknown key 'colour'"),
        (["--month", "2026-01", "--format", "xlsx"], "'xlsx'"),
    ],
)
def test_bad_flags_exit_2_with_one_line(tmp_path, args, says):
    ran = cli(tmp_path, *args)
    assert ran.returncode == 2
    assert ran.stdout == b""
    assert says in ran.stderr.decode()
    assert "Traceback" not in ran.stderr.decode()


async def test_output_file_is_written_whole(gateway, tmp_path):
    """`-o FILE` holds exactly what stdout would; no temporary file is left beside it."""
    out = tmp_path / "exports" / "jan.csv"
    out.parent.mkdir()
    ran = cli(tmp_path, "--month", "2026-01", "--format", "focus", "-o", str(out))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == b""
    assert out.read_bytes() == cli(tmp_path, "--month", "2026-01", "--format", "focus").stdout
    assert os.listdir(out.parent) == ["jan.csv"]
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert sum(int(r["x_RequestCount"]) for r in rows) == 41
    # A second export replaces the first, again whole.
    assert cli(tmp_path, "--month", "2026-01", "-o", str(out)).returncode == 0
    assert out.read_bytes().startswith(b"month,team,model,")
    assert os.listdir(out.parent) == ["jan.csv"]


async def test_output_dash_is_stdout(gateway, tmp_path):
    """`-o -` writes the report to stdout, as other CLIs do, and no file named '-'."""
    ran = cli(tmp_path, "--month", "2026-01", "-o", "-")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == cli(tmp_path, "--month", "2026-01").stdout
    assert ran.stdout.startswith(b"month,team,model,")
    assert not (tmp_path / "-").exists()


def test_an_unwritable_output_path_fails_cleanly(tmp_path):
    """A missing folder, a directory as the file, a read-only folder (when not root):
    exit 1, one plain line naming the path, nothing written."""
    (tmp_path / "folder").mkdir()
    targets = [tmp_path / "missing" / "jan.csv", tmp_path / "folder"]
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() != 0:  # root writes into read-only folders
        targets.append(locked / "jan.csv")
    try:
        for target in targets:
            ran = cli(tmp_path, "--month", "2026-01", "-o", str(target))
            assert ran.returncode == 1, ran.stderr
            message = ran.stderr.decode()
            assert f"cannot write {target}" in message and "Traceback" not in message
            assert ran.stdout == b""
        assert os.listdir(locked) == [] and os.listdir(tmp_path / "folder") == []
        assert not (tmp_path / "missing").exists()
    finally:
        locked.chmod(0o700)


async def test_progress_shows_on_a_terminal_only(gateway, tmp_path):
    """stderr a terminal: a progress bar there, stdout still exactly the report; piped: no bar."""
    piped = cli(tmp_path, "--month", "2026-01")
    assert b"reading the ledger" not in piped.stderr
    leader, follower = pty.openpty()
    try:
        shown = cli(tmp_path, "--month", "2026-01", stderr=follower)
        os.close(follower)
        terminal = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(leader)
    assert shown.returncode == 0
    assert shown.stdout == piped.stdout
    assert b"reading the ledger" in terminal


EVIL_SUBJECT = "=cmd|' /C calc'!A0"
EVIL_MODEL = '=HYPERLINK("http://x","a")'
EVIL_TEAM = "@SUM(1+1)*cmd|' /C calc'!A0"


async def test_caller_text_never_reaches_a_spreadsheet_as_a_formula(gateway, tmp_path, http):
    """A subject, model alias and claimed team that look like formulas are exported with a
    leading ' in csv and focus (the API's bytes equal the CLI's); json keeps them raw."""
    await insert_rows(
        gateway.services.engine,
        [
            priced_row(TENTHS, team="demo", subject=EVIL_SUBJECT, at_ms=at_ms(2026, 2, 3)),
            ledger_row(
                team="demo",
                model=EVIL_MODEL,
                provider=None,
                deployment=None,
                upstream_model=None,
                status=404,
                outcome="refused",
                error_code="model_not_found",
                price_source="none",
                at_ms=at_ms(2026, 2, 4),
            ),
            ledger_row(
                team=EVIL_TEAM,
                model="\tsmall",
                subject="+1",
                status=401,
                outcome="refused",
                at_ms=at_ms(2026, 2, 5),
            ),
        ],
    )
    token = await gateway.token(scopes=["gateway:finance"])
    bodies = {}
    for format, group_by in [
        ("csv", "team,model,subject"),
        ("focus", "team,model,subject"),
        ("json", "team,model,subject"),
    ]:
        status, _, body = await get(
            http, gateway, token, f"?month=2026-02&format={format}&group_by={group_by}"
        )
        assert status == 200, body
        ran = cli(tmp_path, "--month", "2026-02", "--format", format, "--group-by", group_by)
        assert (ran.returncode, ran.stdout) == (0, body), ran.stderr
        bodies[format] = body.decode()
    cells = {cell for row in csv.reader(io.StringIO(bodies["csv"])) for cell in row}
    # the TAB is shown escaped, after the quote it earned (test_report_control_characters.py)
    assert {"'" + EVIL_SUBJECT, "'" + EVIL_MODEL, "'" + EVIL_TEAM, "'\\tsmall", "'+1"} <= cells
    focus = list(csv.DictReader(io.StringIO(bodies["focus"])))
    for line in focus:  # no text cell may start a formula; amounts stay numbers
        for column, cell in line.items():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (column, cell)
        float(line["BilledCost"])
    by_model = {line["x_ModelAlias"]: line for line in focus}
    evil = by_model["'" + EVIL_MODEL]
    assert evil["SkuId"] == "'" + EVIL_MODEL + ":input"
    assert evil["SkuPriceId"].startswith("'" + EVIL_MODEL + ":input:")
    assert {line["x_Subject"] for line in focus} == {"alice", "'" + EVIL_SUBJECT, "'+1"}
    assert {line["SubAccountId"] for line in focus} == {"demo", "'" + EVIL_TEAM}
    rows = json.loads(bodies["json"])["rows"]
    assert {(r["team"], r["model"], r["subject"]) for r in rows} >= {
        ("demo", "small", EVIL_SUBJECT),
        ("demo", EVIL_MODEL, "alice"),
        (EVIL_TEAM, "\tsmall", "+1"),
    }


def cache_ledger():
    """Team search's requests under a cache policy (misses and bypasses charged, hits
    free with the tokens they saved) and team ads' under none."""
    rows = []
    for n in range(12):
        status = ("miss", "hit", "bypass", "hit")[n % 4]
        day = at_ms(2026, 1, 1 + n % 3)
        if status == "hit":  # as the gateway writes a hit: saved tokens, never priced
            rows.append(
                ledger_row(
                    team="search",
                    at_ms=day,
                    input_tokens=30,
                    output_tokens=7,
                    price_source="none",
                    attempts=0,
                    cache="hit",
                )
            )
        else:
            rows.append(
                priced_row(
                    TENTHS,
                    team="search",
                    at_ms=day,
                    input_tokens=30,
                    output_tokens=7,
                    cache=status,
                )
            )
        rows.append(priced_row(TENTHS, team="ads", at_ms=day, input_tokens=5, output_tokens=2))
    return rows


@pytest.fixture
async def cache_gateway(tmp_path):
    async with running_gateway(tmp_path, ADMIN_POLICY) as gw:
        await insert_rows(gw.services.engine, cache_ledger())
        yield gw


async def test_reports_split_rows_by_cache_status(cache_gateway, tmp_path, http):
    """`cache` groups rows into hit, miss, bypass and no cache policy (empty) with the
    same totals as without it; FOCUS marks hit lines; the CLI gives the API's bytes."""
    token = await cache_gateway.token(scopes=["gateway:finance"])

    async def report(format: str, group_by: str) -> bytes:
        query = f"?month=2026-01&format={format}&group_by={group_by}"
        status, _, body = await get(http, cache_gateway, token, query)
        assert status == 200, body
        ran = cli(tmp_path, "--month", "2026-01", "--format", format, "--group-by", group_by)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout == body, (format, group_by)
        return body

    split = json.loads(await report("json", "team,model,cache"))
    plain = json.loads(await report("json", "team,model"))
    assert split["totals"] == plain["totals"]
    assert plain["totals"]["requests"] == 24
    found = {
        (r["team"], r["cache"]): (r["requests"], r["input_tokens"], r["cost_usd"])
        for r in split["rows"]
    }
    assert found == {
        ("ads", None): (12, 60, found[("ads", None)][2]),
        ("search", "bypass"): (3, 90, found[("search", "bypass")][2]),
        ("search", "hit"): (6, 180, "0.000000000"),
        ("search", "miss"): (3, 90, found[("search", "miss")][2]),
    }
    assert found[("search", "miss")][2] != "0.000000000"

    rows = list(csv.DictReader(io.StringIO((await report("csv", "cache")).decode())))
    assert [(r["cache"], r["requests"]) for r in rows] == [
        ("", "12"),
        ("bypass", "3"),
        ("hit", "6"),
        ("miss", "3"),
    ]

    for group_by in ("team,model", "team,model,cache"):
        lines = list(csv.DictReader(io.StringIO((await report("focus", group_by)).decode())))
        hits = [line for line in lines if line["x_CacheStatus"] == "hit"]
        assert hits and all(
            line["ChargeDescription"].endswith("served from the gateway cache, not billed")
            and line["BilledCost"] == "0.000000000"
            for line in hits
        )
        others = [line for line in lines if line["x_CacheStatus"] != "hit"]
        assert {line["x_CacheStatus"] for line in others} == {"", "miss", "bypass"}
        assert not any("gateway cache" in line["ChargeDescription"] for line in others)
        assert sum(int(line["x_RequestCount"]) for line in lines) == 24
        assert sum(int(line["ConsumedQuantity"]) for line in hits) == 6 * 37
