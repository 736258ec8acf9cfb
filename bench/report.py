"""Markdown report for bench/run.py: summary table, TTFT, gateway(s) ÷ baseline. No I/O."""

from __future__ import annotations

import statistics
from typing import Any

SCENARIOS = ("json", "stream")
# The gateway under test, then the optional same gateway at older code (A/B in one run).
GATEWAYS = ("gateway", "gateway-before")
# Issue 3's goals for the gateway (per request, authentication on).
GOALS: dict[str, Any] = {
    "json": {"cpu_us": 500, "ratio": 2.8},
    "stream": {"cpu_us": 1500, "ratio": 1.6},
    "added_p50_ms": 1.0,
    "rss_mib": 150,
}


def _f(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Repeats of one target x scenario x concurrency → medians (CPU also min and max)."""
    cpu = [r["cpu_us_per_request"] for r in runs if r["cpu_us_per_request"] is not None]
    p50 = [r["latency_ms"]["p50"] for r in runs if "p50" in r["latency_ms"]]
    p99 = [r["latency_ms"]["p99"] for r in runs if "p99" in r["latency_ms"]]
    return {
        "requests": sum(r["requests"] for r in runs),
        "requests_per_s": statistics.median(r["requests_per_s"] for r in runs),
        "cpu_us": statistics.median(cpu) if cpu else None,
        "cpu_us_min": min(cpu) if cpu else None,
        "cpu_us_max": max(cpu) if cpu else None,
        "p50_ms": statistics.median(p50) if p50 else None,
        "p99_ms": statistics.median(p99) if p99 else None,
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "other_pct_max": max(r["server_core_other_pct"] for r in runs),
        "errors": sum(r["non_2xx"] + r["socket_errors"] for r in runs),
    }


def summaries(results: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in results:
        for run in r.get("runs", []):
            groups.setdefault((r["name"], run["scenario"], run["concurrency"]), []).append(run)
    return {key: summarize(runs) for key, runs in groups.items()}


def render(meta: dict[str, Any], results: list[dict[str, Any]]) -> str:
    cfg = meta["config"]
    table = summaries(results)
    lines = [
        f"## bench/run.py: commit {meta['commit']}, {meta['started_utc']}",
        "",
        f"wrk -t1 for {cfg['duration_s']} s per run, {cfg['repeat']} interleaved runs per row "
        f"(after {cfg['warmup_s']} s warm-up); target servers on core {cfg['server_cpu']}; "
        f"mock upstream, wrk and probes on core {cfg['load_cpu']}. Stream: 20 events "
        f"{cfg['event_interval_ms']:g} ms apart, include_usage={cfg['stream_usage']}. "
        f"Load average before/after: {meta['loadavg_before']} / {meta['loadavg_after']}.",
        *ab_lines(meta, results),
        "",
        "| target | scenario | conc | requests | req/s | CPU µs/req (min-max) | p50 ms | p99 ms "
        "| +p50 vs direct ms | peak RSS MiB | other load on server core (max) | errors |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for (name, scenario, c), s in table.items():
        added = None
        floor = table.get(("direct", scenario, 1))
        if c == 1 and name != "direct" and floor and floor["p50_ms"] is not None:
            added = s["p50_ms"] - floor["p50_ms"] if s["p50_ms"] is not None else None
        cpu = (
            f"{_f(s['cpu_us'], '.0f')} ({_f(s['cpu_us_min'], '.0f')}-{_f(s['cpu_us_max'], '.0f')})"
        )
        lines.append(
            f"| {name} | {scenario} | {c} | {s['requests']} | {s['requests_per_s']:.0f} | {cpu} "
            f"| {_f(s['p50_ms'])} | {_f(s['p99_ms'])} | {_f(added)} | {s['peak_rss_mib']:.1f} "
            f"| {s['other_pct_max']:.0f}% | {s['errors']} |"
        )
    lines += ["", *ttft_lines(results, cfg), "", *ratio_lines(results, table)]
    notes = []
    for r in results:
        if r["skipped"]:
            reason = " ".join(str(r["skipped"]).split())
            notes.append(f"- **{r['name']} not measured**: {reason[:400]}")
        notes += [f"- **{r['name']}**: {note}" for note in r.get("notes", [])]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def ttft_lines(results: list[dict[str, Any]], cfg: dict[str, Any]) -> list[str]:
    lines = [
        f"Time to first token: {cfg['ttft_requests']} sequential streaming requests per target "
        "on one keep-alive connection (in interleaved batches), request written → first "
        "`data:` event read.",
        "",
        "| target | TTFT p50 ms | p90 ms | min ms | +p50 vs direct ms |",
        "|---|--:|--:|--:|--:|",
    ]
    floor = next((r["ttft"] for r in results if r["name"] == "direct" and r["ttft"]), None)
    for r in results:
        t = r["ttft"]
        if not t:
            continue
        added = t["p50_ms"] - floor["p50_ms"] if floor and r["name"] != "direct" else None
        lines.append(
            f"| {r['name']} | {t['p50_ms']:.3f} | {t['p90_ms']:.3f} | {t['min_ms']:.3f} "
            f"| {_f(added, '.3f')} |"
        )
    return lines


def measured_gateways(results: list[dict[str, Any]]) -> list[str]:
    """The gateway targets that have runs, in GATEWAYS order."""
    names = {r["name"] for r in results if r["runs"]}
    return [name for name in GATEWAYS if name in names]


def ab_lines(meta: dict[str, Any], results: list[dict[str, Any]]) -> list[str]:
    """One sentence naming the code each gateway ran, when gateway-before is in the run."""
    if not any(r["name"] == "gateway-before" for r in results):
        return []
    code = meta.get("code", {})
    return [
        "",
        f"A/B in this run: `gateway` runs {code.get('gateway', '?')}, `gateway-before` runs "
        f"{code.get('gateway-before', '?')}; same command, policy and core, each its own "
        "database and token.",
    ]


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def ratio_lines(
    results: list[dict[str, Any]], table: dict[tuple[str, str, int], dict[str, Any]]
) -> list[str]:
    gateways = measured_gateways(results)
    if "gateway" not in gateways:
        return ["Gateway ÷ baseline: the gateway was not measured (see below)."]
    lines = [
        "Gateway ÷ baseline, median CPU µs per request, against issue 3's goals (JSON "
        "≤ 500 µs and ≤ 2.8x the baseline, stream ≤ 1,500 µs and ≤ 1.6x):",
        "",
        *ratio_table(gateways, table),
        "",
    ]
    rss = {r["name"]: r["peak_rss_mib"] for r in results}
    rss_met = _met(rss["gateway"] <= GOALS["rss_mib"])
    lines.append(
        f"- peak RSS {rss['gateway']:.1f} MiB (goal ≤ 150): {rss_met}"
        + "".join(f"; {name} {rss[name]:.1f} MiB" for name in gateways[1:])
    )
    added = {name: _added_p50(table, name, "json") for name in (*gateways, "baseline")}
    if added["gateway"] is not None:
        lines.append(
            f"- added p50 latency, JSON at c=1: {added['gateway']:.2f} ms (goal ≤ 1 ms): "
            f"{_met(added['gateway'] <= GOALS['added_p50_ms'])}; "
            + "".join(f"{name} adds {_f(added[name])} ms; " for name in gateways[1:])
            + f"the baseline adds {_f(added['baseline'])} ms"
        )
    others = (*gateways, "baseline")
    stream = {name: _added_p50(table, name, "stream") for name in others}
    ttft = {r["name"]: r["ttft"].get("p50_ms") for r in results if r["ttft"]}
    if "direct" in ttft:
        extra = {n: ttft[n] - ttft["direct"] if n in ttft else None for n in others}
        lines.append(
            "- added TTFT p50: "
            + ", ".join(f"{n} {_f(extra[n], '.3f')} ms" for n in others)
            + "; added p50 of a whole stream at c=1: "
            + ", ".join(f"{n} {_f(stream[n])} ms" for n in others)
        )
    return lines


def ratio_table(
    gateways: list[str], table: dict[tuple[str, str, int], dict[str, Any]]
) -> list[str]:
    """Per scenario and concurrency: each gateway's µs and ratio to the baseline, the goals
    (for `gateway`), and with two gateways new ÷ before (their µs, so the baseline cancels)."""
    compare = len(gateways) > 1
    header = [
        "scenario",
        "conc",
        *(f"{g} µs" for g in gateways),
        "baseline µs",
        *(f"{g} ÷ baseline" for g in gateways),
        *(["new ÷ before"] if compare else []),
        "µs goal",
        "ratio goal",
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "|---|" + "--:|" * (len(header) - 3) + "---|---|",
    ]
    rows = dict.fromkeys((sc, c) for (name, sc, c) in table if name in gateways)
    for scenario, c in rows:
        cpu = {g: table.get((g, scenario, c), {}).get("cpu_us") for g in gateways}
        base = table.get(("baseline", scenario, c), {}).get("cpu_us")
        ratios = [_ratio(cpu[g], base) for g in gateways]
        cells = [scenario, str(c), *(_f(cpu[g], ".0f") for g in gateways), _f(base, ".0f")]
        cells += [f"{_f(r)}x" for r in ratios]
        if compare:
            cells.append(f"{_f(_ratio(cpu['gateway'], cpu['gateway-before']))}x")
        goal = GOALS[scenario]
        gw, ratio = cpu["gateway"], ratios[0]
        cells.append("-" if gw is None else _met(gw <= goal["cpu_us"]))
        cells.append("-" if ratio is None else _met(ratio <= goal["ratio"]))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num and den else None


def _added_p50(table: dict[tuple[str, str, int], dict[str, Any]], name: str, scenario: str) -> Any:
    own = table.get((name, scenario, 1), {}).get("p50_ms")
    floor = table.get(("direct", scenario, 1), {}).get("p50_ms")
    return None if own is None or floor is None else own - floor
