"""A policy problem, located: every error names file, line and field.

An issue is printed by `policy check`, logged, and returned by the admin API, and its
field and message may quote what the bundle says: each is made safe to echo as the
issue is made (control characters escaped, quoted values cut), whoever wrote it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.errors import cut, escaped

# A value quoted in a message (`unknown model 'x…'`) is shown up to this many characters,
# then "…" and its length: enough to recognise it, never a 200,000-character name whole.
MAX_QUOTED_CHARS = 100
# What any one location, field or message may take at most. No message the gateway
# writes comes near it; a value echoed without quotes (an exception's text) could.
MAX_ISSUE_CHARS = 2000
# pydantic's error types for a value that must be a mapping and is not; their messages
# speak Python ("a valid dictionary", "or instance of TeamSpec": a model class's name).
MAPPING_EXPECTED = frozenset({"dict_type", "model_type", "model_attributes_type", "dataclass_type"})
# A value as `repr` quotes it: its quotes not part of a word (so "a team's" opens none),
# its own quotes escaped inside. Possessive, so a scan never backtracks.
_QUOTED_VALUE = re.compile(r"""(?<![\w'"])(?:'(?:[^'\\]|\\.)*+'|"(?:[^"\\]|\\.)*+")""")


def _cut_quoted(match: re.Match[str]) -> str:
    text = match[0]
    inner = text[1:-1]
    if len(inner) <= MAX_QUOTED_CHARS:
        return text
    return f"{text[0]}{inner[:MAX_QUOTED_CHARS]}…{text[0]} ({len(inner)} characters)"


def shown_message(message: str) -> str:
    """`message` safe to echo: control characters escaped, each quoted value cut to
    MAX_QUOTED_CHARS, the whole to MAX_ISSUE_CHARS."""
    return cut(_QUOTED_VALUE.sub(_cut_quoted, escaped(message)), MAX_ISSUE_CHARS)


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    location: str  # "policies/models.yaml:12", or "bundle" for a bundle with no file
    field: str  # dotted path, e.g. "models.gpt-4o.deployments[0].weight"
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "location", cut(escaped(self.location), MAX_ISSUE_CHARS))
        object.__setattr__(self, "field", cut(escaped(self.field), MAX_ISSUE_CHARS))
        object.__setattr__(self, "message", shown_message(self.message))

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
    """`models.gpt-4o.deployments[0].weight`; a key longer than MAX_SHOWN_KEY is cut
    (and its control characters escaped as it becomes a PolicyIssue's field)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        name = part if len(part) <= MAX_SHOWN_KEY else part[:MAX_SHOWN_KEY] + "…"
        out += f".{name}" if out else name
    return out
