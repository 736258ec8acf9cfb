"""Whether a bundle fits in policy files: the loader's limits, applied to the files written.

A bundle given as JSON (the admin API) becomes files when it is exported or when
`serve --policies` brings its folder up to date; a file the loader refuses could
never be checked, diffed or applied back, and a watched folder would be stuck
invalid. So the JSON path refuses what the folder path could not hold.

Only the loader's value count and file size can bind: a file written here has no
aliases, so its text is no longer than the file, and the schema nests a bundle
about six levels deep. Pure functions; no I/O.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.policy import bundle_text
from gateway.policy.errors import PolicyIssue
from gateway.policy.loader import MAX_FILE_BYTES, MAX_NODES

# At the schema's depths a value takes at most 16 bytes of YAML per byte of JSON
# (indentation, `- `, quoting, escapes), so a section this small cannot render past
# MAX_FILE_BYTES; a larger one is rendered to measure it (~1 s per MiB).
_SURELY_SMALL_JSON_BYTES = MAX_FILE_BYTES // 16


def yaml_values(value: Any) -> int:
    """How many YAML values the loader counts for `value`: each mapping, key, item, scalar."""
    if isinstance(value, dict):
        return 1 + sum(1 + yaml_values(item) for item in value.values())
    if isinstance(value, list):
        return 1 + sum(yaml_values(item) for item in value)
    return 1


def file_problem(content: dict[str, Any], text: str | None = None) -> str | None:
    """Why the loader would refuse a file holding `content` (rendered as `text`, if given;
    else rendered as export writes it, when it might be too large); None when it fits."""
    values = yaml_values(content)
    if values > MAX_NODES:
        return f"it would hold {values} YAML values, more than the {MAX_NODES} a policy file may"
    if text is None:
        if len(orjson.dumps(content)) <= _SURELY_SMALL_JSON_BYTES:
            return None
        text = bundle_text.dump_file(content)
    size = len(text.encode())
    if size > MAX_FILE_BYTES:
        return (
            f"it would be {size} bytes of YAML, more than the {MAX_FILE_BYTES // 2**20} MiB "
            "a policy file may"
        )
    return None


def export_issues(raw: dict[str, Any], where: str = "bundle") -> list[PolicyIssue]:
    """The sections `gateway policy export` could not write as a file the loader reads back."""
    issues = []
    for section, value in raw.items():
        problem = file_problem({section: value})
        if problem is not None:
            message = (
                f"too large for a policy folder: as {section}.yaml (one file per section, "
                f"as `gateway policy export` writes it) {problem}"
            )
            issues.append(PolicyIssue(where, section, message))
    return issues
