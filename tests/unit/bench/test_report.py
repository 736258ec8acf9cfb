"""bench/report.py: the A/B rows and the gateway ÷ baseline table with a second gateway."""

from typing import Any

from bench import report

META: dict[str, Any] = {
    "commit": "abc123",
    "started_utc": "2026-01-01 00:00 UTC",
    "loadavg_before": "1.00",
    "loadavg_after": "2.00",
    "config": {
        "duration_s": 2,
        "repeat": 1,
        "warmup_s": 1,
        "server_cpu": 0,
        "load_cpu": 1,
        "event_interval_ms": 1,
        "stream_usage": True,
        "ttft_requests": 20,
    },
    "code": {"gateway": "new0000 (/work/main)", "gateway-before": "old0000 (/work/wt/before)"},
}
# CPU µs per request of each target, for every scenario and concurrency.
CPU_US = {"direct": 50.0, "baseline": 200.0, "gateway": 300.0, "gateway-before": 400.0}


def _run(scenario: str, concurrency: int, cpu_us: float) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "concurrency": concurrency,
        "requests": 1000,
        "requests_per_s": 500.0,
        "cpu_us_per_request": cpu_us,
        "latency_ms": {"p50": cpu_us / 100, "p99": cpu_us / 50},
        "peak_rss_mib": 70.0,
        "server_core_other_pct": 2.0,
        "non_2xx": 0,
        "socket_errors": 0,
    }


def _target(name: str, skipped: str | None = None) -> dict[str, Any]:
    cpu = CPU_US[name]
    measured = skipped is None
    return {
        "name": name,
        "skipped": skipped,
        "notes": [],
        "peak_rss_mib": 70.0 if measured else 0.0,
        "ttft": {"requests": 20, "p50_ms": cpu / 100, "p90_ms": cpu / 50, "min_ms": 0.1}
        if measured
        else {},
        "runs": [_run(s, c, cpu) for s in ("json", "stream") for c in (1, 16)] if measured else [],
    }


def _section(text: str, header: str) -> list[str]:
    """The markdown table whose header row starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return lines[start:end]


def test_one_gateway_keeps_the_ratio_table_it_always_had():
    """Without gateway-before the ratio table has one gateway column and no A/B line."""
    text = report.render(META, [_target(n) for n in ("direct", "baseline", "gateway")])
    table = _section(text, "| scenario |")
    assert table[0] == (
        "| scenario | conc | gateway µs | baseline µs | gateway ÷ baseline | µs goal | ratio goal |"
    )
    assert table[1] == "|---|--:|--:|--:|--:|---|---|"
    assert table[2] == "| json | 1 | 300 | 200 | 1.50x | met | met |"
    assert "A/B" not in text and "gateway-before" not in text


def test_ab_run_shows_both_ratios_and_new_over_before():
    """With gateway-before: both gateways' µs and ratios, and new ÷ before, per row."""
    names = ("direct", "baseline", "gateway", "gateway-before")
    text = report.render(META, [_target(n) for n in names])
    table = _section(text, "| scenario |")
    assert table[0] == (
        "| scenario | conc | gateway µs | gateway-before µs | baseline µs | gateway ÷ baseline "
        "| gateway-before ÷ baseline | new ÷ before | µs goal | ratio goal |"
    )
    assert table[1] == "|---|--:|--:|--:|--:|--:|--:|--:|---|---|"
    assert table[2:] == [
        f"| {s} | {c} | 300 | 400 | 200 | 1.50x | 2.00x | 0.75x | met | met |"
        for s in ("json", "stream")
        for c in (1, 16)
    ]
    assert "`gateway` runs new0000 (/work/main), `gateway-before` runs old0000" in text


def test_ab_run_gives_gateway_before_a_row_everywhere_the_gateway_has_one():
    """Summary, TTFT and the added-latency lines all carry gateway-before."""
    names = ("direct", "baseline", "gateway", "gateway-before")
    text = report.render(META, [_target(n) for n in names])
    summary = _section(text, "| target | scenario |")
    assert sum(row.startswith("| gateway-before | ") for row in summary) == 4
    ttft = _section(text, "| target | TTFT")
    assert "| gateway-before | 4.000 | 8.000 | 0.100 | 3.500 |" in ttft
    assert "- peak RSS 70.0 MiB (goal ≤ 150): met; gateway-before 70.0 MiB" in text
    assert "gateway-before adds 3.50 ms; the baseline adds 1.50 ms" in text
    assert "added TTFT p50: gateway 2.500 ms, gateway-before 3.500 ms, baseline 1.500 ms" in text


def test_skipped_gateway_before_leaves_one_gateway_in_the_ratio_table():
    """A gateway-before that did not start is noted, and the ratio table is the usual one."""
    results = [_target(n) for n in ("direct", "baseline", "gateway")]
    results.append(_target("gateway-before", skipped="failed to start: boom"))
    text = report.render(META, results)
    table = _section(text, "| scenario |")
    assert table[0].count("÷") == 1
    assert "- **gateway-before not measured**: failed to start: boom" in text
