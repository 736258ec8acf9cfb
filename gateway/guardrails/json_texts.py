"""The texts of a JSON value a request sends whole to the model: a JSON schema (tool
parameters, a structured-output format), a custom tool's grammar, a field this gateway
does not know. Pure.

Every string in it is a text, and so is every key but JSON Schema's keywords and
OpenAI's field names (a property's name reaches the model as its description does;
`type` hides no secret); nor are `type` values that name a JSON type or one of OpenAI's
kinds (`function`, `grammar`, ...).

Names are not rewritten: a key (a property's name), a `name` (a tool's, a format's), a
`required` entry, a `format` or a `$ref` is what the tool, the schema or the client's
own parser matches by name, and a renamed one breaks it silently (OpenAI refuses a tool
name with `[`; a renamed property fails the client's validation). Each is scanned on its
own, as a lone text (a rule sees exactly what it sees anywhere else); a rule that would
rewrite one raises `NameNotRedactable`, for the check to refuse the request. Any other
string is a value and is rewritten, the request staying valid: descriptions, titles,
defaults, examples, and also `enum` and `const` values, `pattern`s and grammars (the
model is then held to the redacted value). Strings repeat in a schema (`required` lists
the property names again): each distinct text is scanned once per value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gateway.guardrails.scanner import Redaction, apply_redactions
from gateway.guardrails.walk_cost import ITEM_COST

TextFn = Callable[[str], Sequence[Redaction]]
# As deep as a body may nest (api/body.py MAX_DEPTH): deeper (only an answer can be: no
# check bounds an upstream's nesting) the walk goes on without recursion (`_deep`), so
# Python's stack never runs out and no text is left unscanned; a redaction there blocks.
_MAX_DEPTH = 128
# isinstance(x, MAPPING) tries dict first: a parsed body's objects are dicts, and the
# Mapping ABC's own check costs several times more (the readers ask it dozens of times).
MAPPING = (dict, Mapping)
# JSON Schema's keywords (2020-12 and draft 7) and OpenAPI's: names of the schema's own
# parts, never the caller's text.
_KEYWORDS = frozenset(
    {
        "$schema", "$id", "$ref", "$defs", "$anchor", "$comment", "$dynamicRef",
        "$dynamicAnchor", "$vocabulary", "definitions", "type", "enum", "const",
        "properties", "patternProperties", "additionalProperties", "propertyNames",
        "required", "dependentRequired", "dependentSchemas", "dependencies", "items",
        "prefixItems", "additionalItems", "contains", "minContains", "maxContains",
        "unevaluatedItems", "unevaluatedProperties", "allOf", "anyOf", "oneOf", "not",
        "if", "then", "else", "format", "pattern", "minLength", "maxLength", "minimum",
        "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems",
        "maxItems", "uniqueItems", "minProperties", "maxProperties", "title",
        "description", "default", "examples", "example", "deprecated", "readOnly",
        "writeOnly", "nullable", "strict", "name", "schema", "contentEncoding",
        "contentMediaType", "grammar", "definition", "syntax",
        # OpenAI's own field names in the objects read whole (tools, formats, locations)
        "function", "custom", "parameters", "json_schema", "search_context_size",
        "user_location", "approximate", "city", "country", "region", "timezone",
    }
)  # fmt: skip
# Keywords whose string values (or list of them) are names, not free text.
_NAME_VALUES = frozenset(
    {"name", "required", "format", "type", "$ref", "$dynamicRef", "$id", "$anchor"}
    | {"$dynamicAnchor", "$schema"}
)
# `type` values that are JSON types or OpenAI's kinds of tool, format and location.
_TYPE_NAMES = frozenset(
    {"string", "number", "integer", "boolean", "object", "array", "null"}
    | {"function", "custom", "grammar", "text", "json_schema", "json_object", "approximate"}
)


class NameNotRedactable(Exception):
    """A rule would rewrite a name the upstream reads as one (json_texts.py's header):
    the request is refused instead (the rule is the one the text function last fired)."""


class TooDeepToRedact(NameNotRedactable):
    """A rule would rewrite a text nested past _MAX_DEPTH, which only an answer can hold:
    the answer is refused as that rule's block (the gateway writes an answer back with
    orjson, which stops at 254 levels, and an upstream may nest 1024)."""


def check_name(text: str, fn: TextFn) -> str:
    """`text`, a name: scanned as a lone text, and never rewritten (see the header)."""
    if fn(text):
        raise NameNotRedactable
    return text


class _Texts:
    """`fn` on each distinct text of one value, its answers remembered. A `fn` with a
    `lines_clean(texts) -> bool` method (check.py's reviewer) may clear a mapping's names
    in one pass: True only when no rule matches any of them scanned alone. One with a
    `spend` method is charged each list and mapping walked (walk_cost.py)."""

    __slots__ = ("fn", "lines_clean", "names", "seen", "spend")

    def __init__(self, fn: TextFn) -> None:
        self.fn, self.seen, self.names = fn, dict[str, str](), set[str]()
        self.lines_clean: Callable[[list[str]], bool] | None = getattr(fn, "lines_clean", None)
        self.spend = getattr(fn, "spend", None)

    def clear_names(self, value: dict[str, Any]) -> None:
        """A mapping's names (a schema's properties) at the cost of one scan, when clean."""
        names = [key for key in value if key not in _KEYWORDS and key not in self.names]
        if len(names) > 1 and self.lines_clean is not None and self.lines_clean(names):
            self.names.update(names)

    def scan(self, text: str) -> str:
        done = self.seen.get(text)
        if done is None:
            spans = self.fn(text)
            done = self.seen[text] = apply_redactions(text, spans) if spans else text
        return done

    def name(self, text: str) -> str:
        if text not in self.names:
            self.names.add(check_name(text, self.fn))
        return text

    def value(self, value: Any, key: str | None, depth: int) -> Any:
        if isinstance(value, str):
            if key == "type" and value in _TYPE_NAMES:
                return value
            return self.name(value) if key in _NAME_VALUES else self.scan(value)
        if depth > _MAX_DEPTH:
            return self._deep(value, key)
        if isinstance(value, list):
            if self.spend is not None:
                self.spend(len(value) * ITEM_COST)
            out = [self.value(item, key, depth + 1) for item in value]
            return out if any(a is not b for a, b in zip(out, value, strict=True)) else value
        if isinstance(value, dict):
            return self.mapping(value, depth)
        return value

    def mapping(self, value: dict[str, Any], depth: int) -> dict[str, Any]:
        if self.spend is not None:
            self.spend(len(value) * ITEM_COST)
        self.clear_names(value)
        changed = False
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key not in _KEYWORDS:
                self.name(key)
            checked = self.value(item, key, depth + 1)
            changed = changed or checked is not item
            out[key] = checked
        return out if changed else value

    def _deep(self, root: Any, key: str | None) -> Any:
        """`value` for a value nested past _MAX_DEPTH: each text scanned as `value` scans
        it (names checked), on a stack of its own, none rewritten: a rule that would
        rewrite one raises TooDeepToRedact."""
        stack: list[tuple[str | None, Any]] = [(key, root)]
        while stack:
            key, value = stack.pop()
            if isinstance(value, str):
                if self.value(value, key, 0) is not value:
                    raise TooDeepToRedact
            elif isinstance(value, list):
                if self.spend is not None:
                    self.spend(len(value) * ITEM_COST)
                stack.extend((key, item) for item in reversed(value))
            elif isinstance(value, dict):
                if self.spend is not None:
                    self.spend(len(value) * ITEM_COST)
                self.clear_names(value)
                for name in value:
                    if name not in _KEYWORDS:
                        self.name(name)
                stack.extend(reversed(value.items()))
        return root


def rewrite_json(value: Any, fn: TextFn) -> Any:
    """`value` with every text `fn` rewrote rewritten (the same object when none)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    return _Texts(fn).value(value, None, 0)
