"""`auth.issuers` entries that repeat an issuer already listed. Pure; no I/O.

A token names one issuer, and the authenticator routes it to one entry by its
`iss`, compared exactly as the verifier compares it (`auth/external.py`: a
trailing slash makes another issuer). A second entry for the same issuer could
never apply; its audience, scopes and team mapping were silently dead.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.policy.errors import Path, PolicyIssue, format_path
from gateway.policy.loader import Locate


def repeated_issuer_issues(issuers: Iterable[tuple[int, str]], locate: Locate) -> list[PolicyIssue]:
    """An issue at each entry (index, issuer) whose issuer an earlier entry names."""
    first: dict[str, int] = {}
    issues: list[PolicyIssue] = []
    for index, issuer in issuers:
        seen = first.setdefault(issuer, index)
        if seen == index:
            continue
        path: Path = ("auth", "issuers", index, "issuer")
        first_path: Path = ("auth", "issuers", seen)
        message = (
            f"issuer {issuer!r} is listed twice (first at {format_path(first_path)}, "
            f"{locate(first_path)}); a token names one issuer, so only one entry can apply: "
            "merge them into one (audience may be a list)"
        )
        issues.append(PolicyIssue(locate(path), format_path(path), message))
    return issues
