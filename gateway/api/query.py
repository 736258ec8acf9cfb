"""A GET route's query string checked before it is read: the finance report's rules.

An unknown parameter is a 400 naming it (a misspelt `group_by` or `limit` must
not silently answer something else), and so is one given twice where the route
takes one value (which one was meant is unknown). Parses only; no I/O.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.datastructures import QueryParams

from gateway.errors import InvalidRequest, cut, quoted


def check_query(
    query: QueryParams, known: Collection[str], repeatable: Collection[str] = ()
) -> None:
    """Refuse (InvalidRequest) a parameter not in `known`, or one not in `repeatable`
    given more than once."""
    for name in query:
        if name not in known:
            raise InvalidRequest(f"Unknown parameter: {quoted(name)}.", param=cut(name))
    for name in known:
        if name not in repeatable:
            single(query, name)


def single(query: QueryParams, name: str) -> str | None:
    """A parameter given at most once: a second value would be one of two answers."""
    values = query.getlist(name)
    if len(values) > 1:
        raise InvalidRequest(f"Parameter {quoted(name)} is given {len(values)} times.", param=name)
    return values[0] if values else None
