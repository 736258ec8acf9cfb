"""Read a policy bundle (a folder of YAML files) into one validated `PolicyBundle`.

Every YAML node's file and line is remembered by its path in the bundle, so a
schema error, a duplicate key or a missing `${VAR}` is reported as
`file:line: field: message`. Sections made of named entries (`providers`,
`models`, `teams`) may be split across files; a name defined twice is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.policy.errors import Path, PolicyInvalid, PolicyIssue, format_path
from gateway.policy.schema import PolicyBundle

NAMED_SECTIONS = frozenset({"providers", "models", "teams", "guardrails"})
Locate = Callable[[Path], str]


@dataclass(frozen=True, slots=True)
class LoadedBundle:
    bundle: PolicyBundle
    raw: dict[str, Any]  # as written, `${VAR}` kept
    locate: Locate  # path in the bundle → "file:line"


class _Reader:
    """Turns composed YAML nodes into plain values, recording each node's mark."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.marks: dict[Path, str] = {}
        self.issues: list[PolicyIssue] = []
        self._scalars = yaml.constructor.SafeConstructor()

    def where(self, node: yaml.Node) -> str:
        return f"{self.file}:{node.start_mark.line + 1}"

    def value(self, node: yaml.Node, path: Path) -> Any:
        self.marks.setdefault(path, self.where(node))
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self._scalars.construct_object(key_node)
                if not isinstance(key, str | int | float | bool) or isinstance(key, bool):
                    self.issues.append(
                        PolicyIssue(self.where(key_node), format_path(path), "keys must be names")
                    )
                    continue
                key = str(key)
                if key in out:
                    self.issues.append(
                        PolicyIssue(
                            self.where(key_node), format_path((*path, key)), "duplicate key"
                        )
                    )
                    continue
                self.marks[(*path, key)] = self.where(key_node)
                out[key] = self.value(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalars.construct_object(node)


def _read_file(path: FsPath, label: str) -> tuple[dict[str, Any], _Reader]:
    reader = _Reader(label)
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        reader.issues.append(PolicyIssue(f"{label}{line}", "", f"YAML syntax error: {problem}"))
        return {}, reader
    except (OSError, UnicodeDecodeError) as exc:
        reader.issues.append(PolicyIssue(label, "", f"cannot read file: {exc}"))
        return {}, reader
    if node is None:
        return {}, reader
    if not isinstance(node, yaml.MappingNode):
        reader.issues.append(
            PolicyIssue(reader.where(node), "", "a policy file must be a mapping of sections")
        )
        return {}, reader
    value = reader.value(node, ())
    return value, reader


def _merge(
    files: list[tuple[dict[str, Any], _Reader]],
) -> tuple[dict[str, Any], dict[Path, str], list[PolicyIssue]]:
    merged: dict[str, Any] = {}
    marks: dict[Path, str] = {}
    issues: list[PolicyIssue] = []
    for content, reader in files:
        issues.extend(reader.issues)
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
                    marks.update(
                        (p, m) for p, m in reader.marks.items() if p[:2] == (section, name)
                    )
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
    """Schema-check a raw bundle; raise PolicyInvalid naming every bad field."""
    try:
        return PolicyBundle.model_validate(raw)
    except ValidationError as exc:
        issues = []
        for error in exc.errors(include_url=False):
            path = tuple(part for part in error["loc"] if isinstance(part, str | int))
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            elif error["type"] == "missing":
                message = "required field is missing"
            issues.append(PolicyIssue(locate(path), format_path(path), message))
        raise PolicyInvalid(issues) from None


def policy_files(directory: FsPath) -> list[FsPath]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_bundle(directory: FsPath) -> LoadedBundle:
    """Read and schema-check every `*.yaml`/`*.yml` file in `directory`."""
    if not directory.is_dir():
        raise PolicyInvalid([PolicyIssue(str(directory), "", "policy directory not found")])
    files = policy_files(directory)
    if not files:
        raise PolicyInvalid([PolicyIssue(str(directory), "", "no *.yaml policy files found")])
    raw, marks, issues = _merge([_read_file(p, str(p)) for p in files])
    locate = locator(marks, str(directory))
    if issues:
        raise PolicyInvalid(issues)
    return LoadedBundle(validate_bundle(raw, locate), raw, locate)
