"""Who is calling: the result of authentication, the input of every later stage."""

from __future__ import annotations

from dataclasses import dataclass

SCOPE_INVOKE = "gateway:invoke"
SCOPE_ADMIN = "gateway:admin"
SCOPE_FINANCE = "gateway:finance"
# The team of a principal whose token claims a team the policy lacks: its request is
# refused and recorded with no team (a look-alike "teamb " must not read as "teamb" in a
# report), its subject and client id kept. No policy team is named "" (the schema).
NO_TEAM = ""


@dataclass(frozen=True, slots=True)
class Principal:
    team: str
    subject: str
    client_id: str | None
    scopes: frozenset[str]
    issuer: str
    expires_at: float  # unix seconds; a cached principal is dropped after this

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes
