"""Read a policy bundle (a folder of YAML files) into one validated `PolicyBundle`.

Every YAML node's file and line is remembered by its path in the bundle, so a
schema error, a duplicate key or a missing `${VAR}` is reported as
`file:line: field: message`. Sections made of named entries (`providers`,
`models`, `teams`) may be split across files; a name defined twice is an error.

Policy files are plain data: YAML tags, merge keys (`<<`) and integers beyond 64
bits are refused, and so is a file too large, too deep or whose aliases expand
too far (a "billion laughs" bomb), each as a located issue, never a traceback.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.policy.errors import MAPPING_EXPECTED, Path, PolicyInvalid, PolicyIssue, format_path
from gateway.policy.schema import PolicyBundle
from gateway.policy.secrets import read_escapes_beyond_providers

NAMED_SECTIONS = frozenset({"providers", "models", "teams", "guardrails"})
Locate = Callable[[Path], str]

# The shipped example is a few KiB; a policy for thousands of teams is well under
# a MiB. Anything larger is a mistake, and reading it whole would cost its size in memory.
MAX_FILE_BYTES = 4 * 1024 * 1024
# A real policy has at most tens of thousands of values. Aliases are expanded
# each time they are used, so ~400 bytes of nested aliases can stand for
# billions of values; stop counting (aliases included) well before that hurts.
MAX_NODES = 100_000
# One long scalar repeated through aliases multiplies text the same way; no
# file expands to more text than four times the largest file we read.
MAX_TEXT_CHARS = 4 * MAX_FILE_BYTES
# A policy is about six levels deep; PyYAML and `_Reader.value` recurse once per
# level, so a hostile file nested thousands deep would exhaust the Python stack.
MAX_DEPTH = 64
MIN_INT, MAX_INT = -(2**63), 2**63 - 1  # what JSON tooling and PostgreSQL bigint hold

_YAML = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_YAML + t for t in ("str", "int", "float", "bool", "null", "timestamp"))
_MERGE_TAG = _YAML + "merge"


class _Refused(Exception):
    """A file the reader stops on (unreadable, too large, too deep, too many values)."""

    def __init__(self, issue: PolicyIssue) -> None:
        super().__init__(str(issue))
        self.issue = issue


class _Unreadable(Exception):
    """A scalar that is not plain data (a tag, a bad date, a huge integer); its message."""


class _Composer(yaml.SafeLoader):
    """The safe loader, stopping before MAX_DEPTH levels or MAX_NODES nodes.

    PyYAML recurses once per level, and composing is slow (over 30 s for a
    4 MiB flat list), so both are checked as each node is composed. An alias is
    counted once here; `_Reader` counts it each time it is expanded.
    """

    def __init__(self, text: str, label: str) -> None:
        super().__init__(text)
        self._label = label
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._nodes += 1
        if self._depth >= MAX_DEPTH or self._nodes > MAX_NODES:
            event = self.peek_event()  # type: ignore[no-untyped-call]  # stubs leave it bare
            problem = (
                f"nested deeper than {MAX_DEPTH} levels"
                if self._depth >= MAX_DEPTH
                else f"more than {MAX_NODES} YAML values in one file"
            )
            raise _Refused(PolicyIssue(f"{self._label}:{event.start_mark.line + 1}", "", problem))
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class SchemaInvalid(PolicyInvalid):
    """The schema's issues with a bundle that was read whole, and what is needed to check
    the rest of it (`partial.py`): each issue's path, the raw bundle and its locator."""

    def __init__(
        self, issues: list[PolicyIssue], paths: list[Path], raw: dict[str, Any], locate: Locate
    ) -> None:
        super().__init__(issues)
        self.paths = paths
        self.raw = raw
        self.locate = locate


@dataclass(frozen=True, slots=True)
class LoadedBundle:
    bundle: PolicyBundle
    raw: dict[str, Any]  # as written, `${VAR}` kept
    locate: Locate  # path in the bundle → "file:line"


class _Reader:
    """Turns composed YAML nodes into plain values, recording each node's mark.

    Aliases are expanded where they are used, so every value has its own path
    and mark; MAX_NODES, MAX_TEXT_CHARS and MAX_DEPTH bound that expansion
    (raising _Refused), and an alias inside its own anchor is an issue.
    """

    def __init__(self, file: str) -> None:
        self.file = file
        self.marks: dict[Path, str] = {}
        self.issues: list[PolicyIssue] = []
        self._scalars = yaml.constructor.SafeConstructor()
        self._nodes = 0
        self._chars = 0
        self._open: set[int] = set()  # ids of the collections being expanded: a cycle's way back

    def where(self, node: yaml.Node) -> str:
        return f"{self.file}:{node.start_mark.line + 1}"

    def value(self, node: yaml.Node, path: Path) -> Any:
        self._count(node, path)
        self.marks.setdefault(path, self.where(node))
        try:
            if isinstance(node, yaml.ScalarNode):
                return self._scalar(node)
            if id(node) in self._open:
                raise _Unreadable("alias refers to a value that contains it (recursive YAML)")
            if node.tag not in (_YAML + "map", _YAML + "seq"):
                raise _Unreadable(_unsupported(node))
        except _Unreadable as exc:
            self._issue(node, path, str(exc))
            return None
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
            return self._mapping(node, path)
        finally:
            self._open.discard(id(node))

    def _mapping(self, node: yaml.Node, path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            self._count(key_node, path)
            if key_node.tag == _MERGE_TAG:
                message = "YAML merge keys (<<) are not supported; write the keys out"
                self._issue(key_node, (*path, "<<"), message)
                continue
            try:
                key = self._scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            except _Unreadable as exc:
                self._issue(key_node, path, str(exc))
                continue
            if not isinstance(key, str | int | float | bool) or isinstance(key, bool):
                self._issue(key_node, path, "keys must be names")
                continue
            key = str(key)
            if key in out:
                self._issue(key_node, (*path, key), "duplicate key")
                continue
            self.marks[(*path, key)] = self.where(key_node)
            out[key] = self.value(value_node, (*path, key))
        return out

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        """The scalar as str/int/float/bool/None/date; raises _Unreadable otherwise."""
        if node.tag not in _SCALAR_TAGS:
            raise _Unreadable(_unsupported(node))
        try:
            value = self._scalars.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError, KeyError, AttributeError) as exc:
            # A scalar that looks typed but is not valid (`2024-13-45`, `!!int x`);
            # an integer of 4300+ digits is a ValueError too.
            raise _Unreadable(f"cannot read {_shown(node.value)}: {exc}") from None
        if isinstance(value, int) and not MIN_INT <= value <= MAX_INT:
            raise _Unreadable(OUT_OF_RANGE)
        return value

    def _count(self, node: yaml.Node, path: Path) -> None:
        self._nodes += 1
        if isinstance(node, yaml.ScalarNode):
            self._chars += len(node.value)
        if self._nodes > MAX_NODES:
            problem = f"more than {MAX_NODES} values"
        elif self._chars > MAX_TEXT_CHARS:
            problem = f"more than {MAX_TEXT_CHARS} characters of text"
        elif len(path) > MAX_DEPTH:
            problem = f"values nested deeper than {MAX_DEPTH} levels"
        else:
            return
        raise _Refused(
            PolicyIssue(
                self.where(node),
                format_path(path),
                f"the file expands to {problem} (aliases count each time they are used)",
            )
        )

    def _issue(self, node: yaml.Node, path: Path, message: str) -> None:
        self.issues.append(PolicyIssue(self.where(node), format_path(path), message))


def _unsupported(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode) and node.style is None and node.value in ("<<", "="):
        return f"a bare {node.value!r} means something special in YAML; put it in quotes"
    tag = node.tag.replace(_YAML, "!!", 1) if node.tag.startswith(_YAML) else node.tag
    return f"YAML tag {tag} is not supported (policy files are plain data)"


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:40] + "…")


def _read_file(path: FsPath, label: str, directory: FsPath) -> tuple[dict[str, Any], _Reader]:
    reader = _Reader(label)
    try:
        return _parse(_read_text(path, label, directory), reader), reader
    except _Refused as exc:
        reader.issues.append(exc.issue)
        return {}, reader


def policy_file_problem(path: FsPath, directory: FsPath) -> str | None:
    """Why a policy file is not read at all, else None.

    A link is followed only within the folder (a ConfigMap links each file into
    `..data/`): a link to `/etc/shadow` would print its lines into errors and
    logs. Only a regular file is read (a FIFO would block, a device never end).
    """
    try:
        target = path.resolve(strict=True)
        if path.is_symlink() and not target.is_relative_to(directory.resolve(strict=True)):
            return "is a symbolic link to outside the policy folder; it is not read"
        if not stat.S_ISREG(target.stat().st_mode):
            return "is not a regular file; it is not read"
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        return f"cannot read file: {getattr(exc, 'strerror', None) or exc}"
    return None


def _read_text(path: FsPath, label: str, directory: FsPath) -> str:
    """The file's text; raises _Refused when refused, unreadable or beyond MAX_FILE_BYTES."""
    problem = policy_file_problem(path, directory)
    if problem is not None:
        raise _Refused(PolicyIssue(label, "", problem))
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise _Refused(
                PolicyIssue(label, "", f"file is larger than {MAX_FILE_BYTES // 2**20} MiB")
            )
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:  # its line, as for any other problem in the file
        line = data.count(b"\n", 0, exc.start) + 1
        problem = f"not UTF-8 text (byte 0x{data[exc.start]:02x} cannot start a character here)"
        raise _Refused(PolicyIssue(f"{label}:{line}", "", problem)) from None
    except OSError as exc:
        raise _Refused(PolicyIssue(label, "", f"cannot read file: {exc}")) from None


def _parse(text: str, reader: _Reader) -> dict[str, Any]:
    """One file's sections as plain values; raises _Refused when the YAML cannot be read."""
    try:
        node = _compose(text, reader.file)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise _Refused(
            PolicyIssue(f"{reader.file}{line}", "", f"YAML syntax error: {problem}")
        ) from None
    except yaml.reader.ReaderError as exc:  # a control character: located by offset, not mark
        line_no = text.count("\n", 0, exc.position) + 1
        problem = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
        raise _Refused(
            PolicyIssue(f"{reader.file}:{line_no}", "", f"YAML syntax error: {problem}")
        ) from None
    if node is None or _is_empty_document(node):
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise _Refused(
            PolicyIssue(reader.where(node), "", "a policy file must be a mapping of sections")
        )
    value: dict[str, Any] = reader.value(node, ())
    return value


def _is_empty_document(node: yaml.Node) -> bool:
    """`---` and nothing else: an empty document, like an empty file (its node's mark is
    past the last line, so it could only be reported at a line the file does not have)."""
    return isinstance(node, yaml.ScalarNode) and node.tag == _YAML + "null" and node.value == ""


def _compose(text: str, label: str) -> yaml.Node | None:
    composer = _Composer(text, label)
    try:
        return composer.get_single_node()
    finally:
        composer.dispose()


def _merge(
    files: list[tuple[dict[str, Any], _Reader]],
) -> tuple[dict[str, Any], dict[Path, str], list[PolicyIssue]]:
    merged: dict[str, Any] = {}
    marks: dict[Path, str] = {}
    issues: list[PolicyIssue] = []
    for content, reader in files:
        issues.extend(reader.issues)
        entry_marks = _marks_by_entry(reader.marks)
        for section, value in content.items():
            if section in NAMED_SECTIONS and isinstance(value, dict):
                target = merged.setdefault(section, {})
                if not isinstance(target, dict):
                    continue
                marks.setdefault((section,), reader.marks[(section,)])
                for name, entry in value.items():
                    if name in target:
                        first = marks.get((section, name), "?")
                        issues.append(
                            PolicyIssue(
                                reader.marks[(section, name)],
                                f"{section}.{name}",
                                f"defined twice (first at {first})",
                            )
                        )
                        continue
                    target[name] = entry
                    marks.update(entry_marks.get((section, name), {}))
            elif section in merged:
                issues.append(
                    PolicyIssue(
                        reader.marks[(section,)],
                        section,
                        f"section defined twice (first at {marks[(section,)]})",
                    )
                )
            else:
                merged[section] = value
                marks.update((p, m) for p, m in reader.marks.items() if p[:1] == (section,))
    return merged, marks, issues


def _marks_by_entry(marks: dict[Path, str]) -> dict[Path, dict[Path, str]]:
    """A file's marks grouped by their first two path parts (section, entry name), so
    merging an entry costs its own marks, not a scan of the whole file's."""
    grouped: dict[Path, dict[Path, str]] = {}
    for path, mark in marks.items():
        grouped.setdefault(path[:2], {})[path] = mark
    return grouped


def locator(marks: Mapping[Path, str], default: str) -> Locate:
    """Map a path to the mark of its longest recorded prefix."""

    def locate(path: Path) -> str:
        for end in range(len(path), -1, -1):
            mark = marks.get(tuple(path[:end]))
            if mark is not None:
                return mark
        return default

    return locate


def validate_bundle(raw: dict[str, Any], locate: Locate) -> PolicyBundle:
    """Schema-check a raw bundle; raise SchemaInvalid naming every bad field. The bundle
    checked (and enforced) reads `$${` outside the providers as the literal `${`. An
    integer past 64 bits (signed) is refused here too, as the YAML reader refuses it: a
    bundle from the admin API's JSON held one, which then never exported and applied back
    (probe p17)."""
    issues: list[PolicyIssue] = []
    paths: list[Path] = []
    try:
        bundle = PolicyBundle.model_validate(read_escapes_beyond_providers(raw))
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            path = tuple(part for part in error["loc"] if isinstance(part, str | int))
            paths.append(path)
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            elif error["type"] == "missing":
                message = "required field is missing"
            elif error["type"] in MAPPING_EXPECTED:  # "…or instance of TeamSpec": Python's
                message = "expected a mapping (key: value pairs)"
            issues.append(PolicyIssue(locate(path), format_path(path), message))
    for path in _ints_out_of_range(raw, ()):
        if path not in paths:
            paths.append(path)
            issues.append(PolicyIssue(locate(path), format_path(path), OUT_OF_RANGE))
    if issues:
        raise SchemaInvalid(issues, paths, raw, locate) from None
    return bundle


OUT_OF_RANGE = f"integer out of range (must be {MIN_INT} to {MAX_INT})"


def _ints_out_of_range(value: Any, path: Path) -> Iterator[Path]:
    if isinstance(value, int) and not isinstance(value, bool):
        if not MIN_INT <= value <= MAX_INT:
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _ints_out_of_range(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _ints_out_of_range(item, (*path, index))


def policy_files(directory: FsPath) -> list[FsPath]:
    """The folder's `*.yaml`/`*.yml` entries but directories and hidden names; links and
    oddities included, so that reading them reports them (`policy_file_problem`) rather
    than skipping them. A hidden name (`.#teams.yaml`, an editor's lock or backup) is
    no policy, as `ls` leaves it out."""
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix in (".yaml", ".yml")
        and not p.name.startswith(".")
        and (p.is_symlink() or not p.is_dir())
    )


def missing_folder(directory: FsPath) -> str:
    """Why `directory` is no policy folder: absent, or a file (a bundle is a folder)."""
    if directory.exists():
        return "a file, not a policy directory: give the folder that holds its files"
    return "policy directory not found"


def load_bundle(directory: FsPath) -> LoadedBundle:
    """Read and schema-check every `*.yaml`/`*.yml` file in `directory`."""
    if not directory.is_dir():
        raise PolicyInvalid([PolicyIssue(str(directory), "", missing_folder(directory))])
    files = policy_files(directory)
    if not files:
        raise PolicyInvalid([PolicyIssue(str(directory), "", "no *.yaml policy files found")])
    read = [_read_file(p, str(p), directory) for p in files]
    raw, marks, issues = _merge(read)
    locate = locator(marks, str(directory))
    if issues:
        # Still check what the readable files say, so one broken file does not hide the
        # others' errors; an issue not located in a readable file (a section missing
        # because its file is broken) would only be noise.
        readable = {reader.file for _, reader in read if not reader.issues}
        try:
            validate_bundle(raw, locate)
        except PolicyInvalid as invalid:
            issues += [i for i in invalid.issues if i.location.split(":")[0] in readable]
        raise PolicyInvalid(issues)  # not SchemaInvalid: a broken file's sections are missing
    return LoadedBundle(validate_bundle(raw, locate), raw, locate)
