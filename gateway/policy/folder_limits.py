"""How a bundle fits in policy files: the loader's limits, applied to the files written.

A bundle given as JSON (the admin API) becomes files when it is exported or when
`serve --policies` brings its folder up to date; a file the loader refuses could
never be checked, diffed or applied back, and a watched folder would be stuck
invalid. So a file that would be past the limits is split in several (the
loader merges a named section across files: `teams.yaml`, `teams-2.yaml`, …),
and the JSON path refuses only what no split can hold: one entry (or one
unnamed section, such as `routing`) past the limits even in a file of its own.

Only the loader's value count and file size can bind: a file written here has no
aliases, so its text is no longer than the file, and the schema nests a bundle
about six levels deep. Pure functions; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from gateway.policy import bundle_text
from gateway.policy.errors import PolicyInvalid, PolicyIssue
from gateway.policy.loader import MAX_FILE_BYTES, MAX_NODES, NAMED_SECTIONS

# At the schema's depths a value takes at most 16 bytes of YAML per byte of JSON
# (indentation, `- `, quoting, escapes), so a section this small cannot render past
# MAX_FILE_BYTES; a larger one is rendered to measure it (~1 s per MiB).
_SURELY_SMALL_JSON_BYTES = MAX_FILE_BYTES // 16

Files = dict[str, dict[str, Any]]  # file name → the sections it holds
# The smallest part of a bundle a file holds: a named section's entry, or a whole section.
Piece = tuple[str, str | None, Any]  # section, entry name (None: the whole section), value


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


def _pieces(content: dict[str, Any]) -> Iterator[Piece]:
    for section, value in content.items():
        if section in NAMED_SECTIONS and isinstance(value, dict) and value:
            for name, entry in value.items():
                yield section, name, entry
        else:
            yield section, None, value


def _file_of(pieces: list[Piece]) -> dict[str, Any]:
    content: dict[str, Any] = {}
    for section, name, value in pieces:
        if name is None:
            content[section] = value
        else:
            content.setdefault(section, {})[name] = value
    return content


def _piece_issue(piece: Piece, problem: str, where: str) -> PolicyIssue:
    section, name, _ = piece
    field = section if name is None else f"{section}.{name}"
    return PolicyIssue(
        where,
        field,
        f"too large for a policy folder: even alone in a file ({section}.yaml) {problem}",
    )


def _by_values(pieces: list[Piece]) -> list[list[Piece]]:
    """The pieces in order, in as few runs as MAX_NODES allows (counted as the loader does)."""
    runs: list[list[Piece]] = [[]]
    values, sections = 1, set[str]()  # the file's own mapping
    for piece in pieces:
        section, name, value = piece
        added = 1 + yaml_values(value) + (2 if name is not None and section not in sections else 0)
        if runs[-1] and values + added > MAX_NODES:
            runs.append([])
            values, sections = 1, set()
        runs[-1].append(piece)
        values += added
        sections.add(section)
    return runs


def _fitting(pieces: list[Piece], where: str) -> tuple[list[dict[str, Any]], list[PolicyIssue]]:
    """The pieces split into files the loader reads (halving a run whose text is too large),
    and the pieces that fit no file."""
    files: list[dict[str, Any]] = []
    issues: list[PolicyIssue] = []
    todo = _by_values(pieces)
    while todo:
        run = todo.pop(0)
        content = _file_of(run)
        problem = file_problem(content)
        if problem is None:
            files.append(content)
        elif len(run) == 1:
            issues.append(_piece_issue(run[0], problem, where))
        else:
            half = len(run) // 2
            todo[:0] = [run[:half], run[half:]]
    return files, issues


def _free_name(name: str, taken: set[str]) -> str:
    """`teams-2.yaml`, `teams-3.yaml`, … for `teams.yaml`: the first one not taken."""
    stem, dot, suffix = name.rpartition(".")
    number = 2
    while f"{stem}-{number}{dot}{suffix}" in taken:
        number += 1
    return f"{stem}-{number}{dot}{suffix}"


def split_to_fit(files: Files, where: str = "bundle", taken: Iterable[str] = ()) -> Files:
    """`files` with each file past the loader's limits split into several: the first keeps
    its name, the others are named after it (`teams-2.yaml`, …, none of `taken`). Raises
    PolicyInvalid naming each entry (or unnamed section) that no file can hold."""
    out: Files = {}
    taken = {*files, *taken}
    issues: list[PolicyIssue] = []
    for name, content in files.items():
        if file_problem(content) is None:
            out[name] = content
            continue
        parts, refused = _fitting(list(_pieces(content)), where)
        issues += refused
        for index, part in enumerate(parts):
            part_name = name if index == 0 else _free_name(name, taken)
            taken.add(part_name)
            out[part_name] = part
    if issues:
        raise PolicyInvalid(issues)
    return out


def export_files(raw: dict[str, Any]) -> dict[str, str]:
    """The files `gateway policy export` writes: one per section (`teams.yaml`, …), a
    section past the loader's limits in several, and for an empty bundle one file holding
    an empty mapping (it reads back as that bundle). Raises PolicyInvalid as split_to_fit."""
    names = [s for s in bundle_text.SECTION_ORDER if s in raw]
    names += [s for s in raw if s not in bundle_text.SECTION_ORDER]
    files = split_to_fit(
        bundle_text.holding_something({f"{name}.yaml": {name: raw[name]} for name in names})
    )
    return {name: bundle_text.dump_file(content) for name, content in files.items()}


def export_issues(raw: dict[str, Any], where: str = "bundle") -> list[PolicyIssue]:
    """What no policy folder could hold: each entry (or unnamed section) past the loader's
    limits even alone in a file. The rest `export_files` splits to fit."""
    issues = []
    for section, value in raw.items():
        content = {section: value}
        if file_problem(content) is None:  # the common case, checked at once
            continue
        for piece in _pieces(content):
            problem = file_problem(_file_of([piece]))
            if problem is not None:
                issues.append(_piece_issue(piece, problem, where))
    return issues


def rewrite_plan(
    old: dict[str, Any], new: dict[str, Any], file_of: bundle_text.FileOf
) -> dict[str, str | None]:
    """`bundle_text.files_to_rewrite`, with a file the change would take past the loader's
    limits split in several (`<file>-2.yaml`, …, names the folder does not use). Raises
    PolicyInvalid when an entry fits no file."""
    before = bundle_text.holding_something(bundle_text.place_sections(old, file_of))
    placed = bundle_text.holding_something(bundle_text.place_sections(new, file_of))
    after = split_to_fit(placed, "the running version", taken=before)
    return bundle_text.plan_of(before, after)
