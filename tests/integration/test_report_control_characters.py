"""`gateway report usage` and `GET /finance/reports/usage`: text a caller chose (a refused
model alias, a token's subject) reaches csv and focus cells escaped, so no terminal runs an
ESC sequence from it and no bidi control reorders a row; json keeps it raw."""

import csv
import io
import json
import os
import subprocess
from pathlib import Path

from tests.support.admin import ADMIN_POLICY
from tests.support.gateway import running_gateway
from tests.support.ledger_rows import at_ms, insert_rows, ledger_row, priced_row, prices
from tests.support.processes import GATEWAY

TENTHS = prices(100_000_000, 200_000_000)
# Moves the cursor up a line, erases it and writes a cheaper row over the real `odd` one.
FORGED_MODEL = "odd\x1b[1A\r\x1b[2K2026-03,search,odd,2,0,12,10,0,0.000010000\x1b[8m"
BIDI_SUBJECT = "bob\u202eevil\u2066\u200b"


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/gateway.db"}
    return subprocess.run(
        [GATEWAY, "report", "usage", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )


async def test_control_characters_in_caller_text_are_escaped_in_csv_and_focus(tmp_path, http):
    """A refused request's model alias holding `\\x1b[1A` is one row showing `\\x1b[1A` in
    csv and focus (API bytes equal the CLI's), the real row beside it intact; json raw."""
    async with running_gateway(tmp_path, ADMIN_POLICY) as gw:
        await insert_rows(
            gw.services.engine,
            [
                priced_row(
                    TENTHS,
                    team="search",
                    model="odd",
                    subject=BIDI_SUBJECT,
                    input_tokens=2_000,
                    output_tokens=600,
                    at_ms=at_ms(2026, 3, 2),
                ),
                ledger_row(
                    team="search",
                    model=FORGED_MODEL,
                    provider=None,
                    deployment=None,
                    upstream_model=None,
                    status=404,
                    outcome="refused",
                    error_code="model_not_found",
                    price_source="none",
                    at_ms=at_ms(2026, 3, 3),
                ),
            ],
        )
        token = await gw.token(scopes=["gateway:finance"])
        bodies = {}
        for format in ("csv", "focus", "json"):
            query = f"?month=2026-03&format={format}&group_by=team,model,subject"
            async with http.get(
                f"{gw.origin}/finance/reports/usage{query}",
                headers={"authorization": f"Bearer {token}"},
            ) as response:
                assert response.status == 200, await response.text()
                body = await response.read()
            ran = cli(
                tmp_path,
                "--month",
                "2026-03",
                "--format",
                format,
                "--group-by",
                "team,model,subject",
            )
            assert (ran.returncode, ran.stdout) == (0, body), ran.stderr
            bodies[format] = body
    escaped_model = "odd\\x1b[1A\\r\\x1b[2K2026-03,search,odd,2,0,12,10,0,0.000010000\\x1b[8m"
    escaped_subject = "bob\\u202eevil\\u2066\\u200b"
    for format in ("csv", "focus"):
        text = bodies[format].decode()
        assert "\x1b" not in text and "\u202e" not in text, format
        lines = text.removesuffix("\r\n").split("\r\n")
        assert len(lines) == len(list(csv.reader(io.StringIO(text, newline="")))), format
        assert not any("\r" in line or "\n" in line for line in lines), format
    rows = list(csv.DictReader(io.StringIO(bodies["csv"].decode(), newline="")))
    assert [(r["model"], r["subject"], r["requests"]) for r in rows] == [
        ("odd", escaped_subject, "1"),
        (escaped_model, "alice", "1"),
    ]
    assert rows[0]["cost_usd"] == "0.000320000"  # the real row, untouched
    focus = list(csv.DictReader(io.StringIO(bodies["focus"].decode(), newline="")))
    assert {line["x_ModelAlias"] for line in focus} == {"odd", escaped_model}
    assert {line["x_Subject"] for line in focus} == {escaped_subject, "alice"}
    assert {json.loads(line["Tags"])["model"] for line in focus} == {"odd", FORGED_MODEL}
    document = json.loads(bodies["json"])
    assert {(r["model"], r["subject"]) for r in document["rows"]} == {
        ("odd", BIDI_SUBJECT),
        (FORGED_MODEL, "alice"),
    }
