"""A policy problem, located: every error names file, line and field."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    location: str  # "policies/models.yaml:12", or "bundle" for a bundle with no file
    field: str  # dotted path, e.g. "models.gpt-4o.deployments[0].weight"
    message: str

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{where}{self.field}: {self.message}" if self.field else f"{where}{self.message}"


class PolicyInvalid(Exception):
    """A bundle that must not be enforced; carries every issue found, not just the first."""

    def __init__(self, issues: list[PolicyIssue]) -> None:
        super().__init__("\n".join(str(issue) for issue in issues))
        self.issues = issues


Path = tuple[str | int, ...]


# A key is echoed in errors and logs; a file that is not a policy (a stray or hostile
# file whose lines parse as keys) must not be copied into them whole.
MAX_SHOWN_KEY = 40


def format_path(path: Path) -> str:
    """`models.gpt-4o.deployments[0].weight`; a key longer than MAX_SHOWN_KEY is cut."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        name = part if len(part) <= MAX_SHOWN_KEY else part[:MAX_SHOWN_KEY] + "…"
        out += f".{name}" if out else name
    return out
