"""Reading a policy costs time in proportion to its entries, not to their square."""

import time
from pathlib import Path

from gateway.policy.loader import load_bundle

MODELS = """\
providers:
  demo: {type: mock}
models:
  m: {deployments: [{provider: demo, model: mock-chat}]}
"""


def folder_of_teams(directory: Path, teams: int) -> Path:
    """`teams` teams split over two files, as a large policy is often kept."""
    directory.mkdir()
    (directory / "models.yaml").write_text(MODELS)
    half = teams // 2
    for part, names in (("a", range(half)), ("b", range(half, teams))):
        lines = ["teams:"] + [f"  t{i}:\n    models: [m]" for i in names]
        (directory / f"teams-{part}.yaml").write_text("\n".join(lines) + "\n")
    return directory


def seconds_to_load(directory: Path) -> float:
    """The best of two loads: the least disturbed by whatever else the machine does."""
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        load_bundle(directory)
        best = min(best, time.perf_counter() - started)
    return best


def test_four_times_the_teams_takes_about_four_times_as_long(tmp_path: Path) -> None:
    """8,000 teams load in well under 8 times the time of 2,000 (linear is 4, quadratic 16)."""
    small = seconds_to_load(folder_of_teams(tmp_path / "small", 2_000))
    large = seconds_to_load(folder_of_teams(tmp_path / "large", 8_000))
    assert large < 8 * small, f"2,000 teams: {small:.2f} s, 8,000 teams: {large:.2f} s"
