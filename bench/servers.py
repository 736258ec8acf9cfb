"""Servers for bench/run.py: start the mock, baseline and gateways pinned to a core; stop them.

Owns process lifetimes: each server is started in its own session and stopped by
its own process group id, never by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import measure

BENCH_DIR = Path(__file__).resolve().parent
GATEWAY_TEAM = "bench"
# Started alike; `gateway-before` also gets Config.compare_env (an A/B in one run).
GATEWAYS = ("gateway", "gateway-before")


@dataclass(frozen=True)
class Config:
    python: str
    duration_s: int
    repeat: int
    warmup_s: int
    concurrency: list[int]
    ttft_requests: int
    event_interval_ms: float
    stream_usage: bool
    server_cpu: int
    load_cpu: int
    gateway_bin: str
    gateway_args: list[str]
    gateway_env: dict[str, str]
    compare_env: dict[str, str]  # on top of gateway_env, for `gateway-before` only
    compare_label: str  # what `gateway-before` runs, for the report
    startup_timeout_s: float
    bundle: str = str(BENCH_DIR / "policies" / "bundle.yaml")  # the gateway's policy file
    compare_bundle: str | None = None  # `gateway-before`'s, when not the same
    scenarios: tuple[str, ...] = ("json", "stream")  # which of run.py's SCENARIOS to run


@dataclass
class Target:
    name: str
    port: int = 0
    pid: int = 0  # root of the measured process tree
    token: str | None = None
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    ttft_s: list[float] = field(default_factory=list)
    ttft: dict[str, float] = field(default_factory=dict)
    peak_rss_mib: float = 0.0


# --- processes ----------------------------------------------------------------------------------


class Processes:
    """Every process this run starts, each in its own session, stopped by its own group id."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []
        self.transient: list[subprocess.Popen[bytes]] = []  # wrk runs, owned by measure.run_wrk

    def start(
        self,
        cmd: list[str],
        cpu: int,
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["taskset", "-c", str(cpu), *cmd],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        self.running.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes]) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)  # the group this process leads (start_new_session)
            try:
                proc.wait(timeout=5)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self) -> None:
        for proc in [*self.transient, *reversed(self.running)]:
            self.stop(proc)
        self.transient.clear()
        self.running.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- starting the servers -----------------------------------------------------------------------


def mock_command(cfg: Config, port: int) -> list[str]:
    script = str(BENCH_DIR / "mock_upstream.py")
    interval = f"{cfg.event_interval_ms:g}"
    return [cfg.python, script, "--port", str(port), "--event-interval-ms", interval]


def gateway_env(cfg: Config, name: str) -> dict[str, str]:
    """The environment variables a gateway target gets on top of the harness's own."""
    return {**cfg.gateway_env, **(cfg.compare_env if name == "gateway-before" else {})}


def gateway_missing(cfg: Config, name: str) -> str | None:
    """Why this gateway target cannot run, or None."""
    if not Path(cfg.gateway_bin).exists():
        return f"{cfg.gateway_bin} does not exist yet (pip install -e . creates it)"
    env = {**os.environ, **gateway_env(cfg, name)}  # the code it will run, not the harness's
    try:
        out = subprocess.run([cfg.gateway_bin, "--help"], capture_output=True, env=env, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`{cfg.gateway_bin} --help` failed: {exc}"
    if out.returncode != 0:
        err = out.stderr.decode(errors="replace").strip().splitlines()[-1:]
        return f"`{cfg.gateway_bin} --help` exited {out.returncode}: {' '.join(err)}"
    text = out.stdout.decode(errors="replace")
    missing = [cmd for cmd in ("serve", "token") if cmd not in text]
    if missing:
        return f"`gateway --help` lists no {' / '.join(missing)} command yet"
    return None


def mint_token(cfg: Config, env: dict[str, str], cwd: Path, team: str = GATEWAY_TEAM) -> str:
    out = subprocess.run(
        [cfg.gateway_bin, "token", "--team", team],
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )
    stdout = out.stdout.decode(errors="replace")
    lines = stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        stderr = out.stderr.decode(errors="replace")
        raise RuntimeError(f"`gateway token` exited {out.returncode}:\n{stdout}{stderr}")
    return lines[-1].strip()


def start_gateway(
    target: Target, cfg: Config, procs: Processes, tmp: Path, upstream_port: int, ready: bytes
) -> None:
    gw_dir = tmp / target.name  # each gateway its own database, policy copy and signing key
    policy_dir = gw_dir / "policies"
    policy_dir.mkdir(parents=True)
    path = cfg.compare_bundle if target.name == "gateway-before" else None
    bundle = Path(path or cfg.bundle).read_text()
    (policy_dir / "bundle.yaml").write_text(bundle.replace(":PORT/", f":{upstream_port}/"))
    env = {
        **os.environ,
        "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{gw_dir / 'bench.db'}",
        "GATEWAY_POLICY_DIR": str(policy_dir),
        **gateway_env(cfg, target.name),
    }
    target.port = free_port()
    cmd = [cfg.gateway_bin, "serve", "--host", "127.0.0.1", "--port", str(target.port)]
    cmd += ["--policies", str(policy_dir), *cfg.gateway_args]
    # Mint first (the command may create the database and signing key); if it needs
    # something only the server sets up, mint again once the server listens.
    try:
        target.token = mint_token(cfg, env, gw_dir)
    except RuntimeError as exc:
        target.notes.append(f"token before serve failed, minted after start: {str(exc)[:200]}")
    proc = procs.start(cmd, cfg.server_cpu, tmp / f"{target.name}.log", env=env, cwd=gw_dir)
    target.pid = proc.pid

    def alive() -> bool:
        return proc.poll() is None

    if target.token is None:
        deadline = time.monotonic() + cfg.startup_timeout_s
        while alive() and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", target.port)):
                break
            time.sleep(0.2)
        target.token = mint_token(cfg, env, gw_dir)
    measure.wait_ready(target.port, ready, target.token, alive, cfg.startup_timeout_s)


def start_target(
    target: Target, cfg: Config, procs: Processes, tmp: Path, upstream_port: int, ready: bytes
) -> None:
    """Start one target server on the server core and wait until it answers a chat request."""
    if target.name in GATEWAYS:
        start_gateway(target, cfg, procs, tmp, upstream_port, ready)
        return
    target.port = free_port()
    if target.name == "direct":
        cmd = mock_command(cfg, target.port)
    else:
        cmd = [cfg.python, str(BENCH_DIR / "baseline_forwarder.py"), "--port", str(target.port)]
        cmd += ["--upstream", f"http://127.0.0.1:{upstream_port}"]
    proc = procs.start(cmd, cfg.server_cpu, tmp / f"{target.name}.log")
    target.pid = proc.pid
    measure.wait_ready(target.port, ready, None, lambda: proc.poll() is None, cfg.startup_timeout_s)
