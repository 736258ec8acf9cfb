"""Measurement helpers for bench/run.py: /proc readers, wrk, HTTP probes.

Owns reading numbers; starts and stops nothing except the wrk runs and probe
connections it makes (servers.py owns the servers).
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
BENCH_DIR = Path(__file__).resolve().parent
WRK_SCRIPT = BENCH_DIR / "chat.lua"
CHAT_PATH = "/v1/chat/completions"

# --- process tree: CPU and peak RSS -------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the `(comm)` field: index 0 is field 3 (state)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """root and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def tree_cpu_s(root: int) -> float:
    """utime + stime of the tree, plus cutime + cstime (children already reaped), in seconds."""
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / CLK_TCK


def tree_sys_cpu_s(root: int) -> float:
    """stime (kernel time) of the tree, plus cstime, in seconds: the part of tree_cpu_s
    spent in system calls, interrupts and the scheduler."""
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += int(fields[12]) + int(fields[14])  # stime cstime
    return ticks / CLK_TCK


def tree_main_threads_cpu_s(root: int) -> float:
    """utime + stime of each process's main thread (the gateway's event loop), in seconds:
    the rest of tree_cpu_s is other threads' (span export, ledger writer, to_thread)."""
    ticks = 0
    for pid in process_tree(root):
        try:
            raw = Path(f"/proc/{pid}/task/{pid}/stat").read_text()
        except OSError:
            continue
        ticks += sum(int(f) for f in raw[raw.rfind(")") + 2 :].split()[11:13])
    return ticks / CLK_TCK


def tree_peak_rss_kib(root: int) -> int:
    """VmHWM summed over the tree (each process's own peak; an upper bound of the joint peak)."""
    total = 0
    for pid in process_tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def cpu_busy_s(cpu: int) -> float:
    """Busy time of one core from /proc/stat (everything but idle and iowait), in seconds."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            v = [int(x) for x in line.split()[1:]]
            return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK  # user..steal minus idle, iowait
    raise ValueError(f"no cpu{cpu} in /proc/stat")


# --- wrk ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    non_2xx: int
    socket_errors: int
    latency_ms: dict[str, float]  # "p50", "p75", "p90", "p99"
    output: str


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DIST = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_TOTAL = re.compile(r"^\s+(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.M)
_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_wrk(output: str) -> WrkResult:
    total = _TOTAL.search(output)
    if total is None:
        raise ValueError(f"cannot read wrk output:\n{output}")
    non_2xx = _NON2XX.search(output)
    sock = _SOCKET.search(output)
    return WrkResult(
        requests=int(total.group(1)),
        duration_s=float(total.group(2)) * _UNITS_MS[total.group(3)] / 1000.0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
        latency_ms={f"p{p}": float(v) * _UNITS_MS[u] for p, v, u in _DIST.findall(output)},
        output=output,
    )


def wrk_command(url: str, connections: int, duration_s: int, cpu: int) -> list[str]:
    return [
        "taskset",
        "-c",
        str(cpu),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration_s}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]


def run_wrk(
    url: str,
    connections: int,
    duration_s: int,
    body_file: Path,
    token: str | None,
    cpu: int,
    procs: list[subprocess.Popen[bytes]],
) -> WrkResult:
    """Run wrk to completion; the Popen sits in `procs` meanwhile so a Ctrl-C can stop it."""
    env = {**os.environ, "BENCH_BODY_FILE": str(body_file), "BENCH_TOKEN": token or ""}
    proc = subprocess.Popen(
        wrk_command(url, connections, duration_s, cpu),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    procs.append(proc)
    try:
        out, _ = proc.communicate(timeout=duration_s + 60)
    finally:
        procs.remove(proc)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited {proc.returncode}:\n{out.decode(errors='replace')}")
    return parse_wrk(out.decode(errors="replace"))


# --- HTTP probes --------------------------------------------------------------------------------


def _headers(token: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def post(port: int, body: bytes, token: str | None, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """One POST /v1/chat/completions on a fresh connection (http.client: no proxy env)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("POST", CHAT_PATH, body=body, headers=_headers(token))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(
    port: int, body: bytes, token: str | None, alive: Callable[[], bool], timeout_s: float
) -> None:
    """Poll with a real chat request until it answers 200, the server dies, or time runs out."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the server exited while starting")
        try:
            status, content = post(port, body, token, timeout_s=5.0)
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if status == 200:
                return
            last = f"HTTP {status}: {content[:500]!r}"
        time.sleep(0.2)
    raise RuntimeError(f"not ready after {timeout_s:g}s; last: {last}")


def count_stream_events(content: bytes) -> tuple[int, bool, bool]:
    """(content events, saw a usage chunk, ended with [DONE]) of an SSE body."""
    events = [e for e in content.split(b"\n\n") if e.strip()]
    done = bool(events) and events[-1].strip() == b"data: [DONE]"
    usage = any(b'"choices":[]' in e and b'"usage":{' in e for e in events)
    return len(events) - int(done) - int(usage), usage, done


# --- time to first token ------------------------------------------------------------------------


def _read_more(sock: socket.socket, buf: bytearray) -> None:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("connection closed mid-response")
    buf += data


def time_to_first_token(port: int, body: bytes, token: str | None, requests: int) -> list[float]:
    """Seconds to first token of N sequential streaming requests on one keep-alive connection.

    Measured from just before the request is written to the first `data:` event read; the
    rest of each stream is read to its end before the next request.
    """
    head = f"POST {CHAT_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    for name, value in _headers(token).items():
        head += f"{name}: {value}\r\n"
    request = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    samples: list[float] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(requests):
            buf = bytearray()
            start = time.perf_counter()
            sock.sendall(request)
            while (end := buf.find(b"\r\n\r\n")) < 0:
                _read_more(sock, buf)
            header = bytes(buf[:end]).decode("latin-1").lower()
            if not header.startswith("http/1.1 200"):
                raise RuntimeError(f"TTFT probe got: {header.splitlines()[0]}")
            if "transfer-encoding: chunked" not in header:
                raise RuntimeError("TTFT probe expects a chunked streaming response")
            while buf.find(b"data:", end) < 0:
                _read_more(sock, buf)
            samples.append(time.perf_counter() - start)
            while not buf.endswith(b"\r\n0\r\n\r\n"):
                _read_more(sock, buf)
    return samples
