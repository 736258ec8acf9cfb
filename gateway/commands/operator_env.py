"""The environment a `gateway policy` command compiles a bundle with.

The machine that checks, previews or applies a policy (a laptop, a CI job) need not
hold the providers' keys, as `terraform plan` needs no production secrets: each
gateway resolves `${VAR}` from its own environment when it enforces a version, and
`GET /admin/policy` shows `newest_problem` when one cannot. So a reference the policy
may use (GATEWAY_SECRET_ENV_ALLOW) but this shell lacks is a warning here, not an
error, and so is a `${file:...}` secret this host lacks (`secrets.MISSING_FILE_PREFIX`).
Every other rule holds: a name the policy may not use is still refused before any
lookup, and the gateway's own GATEWAY_* settings are read as they are.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

import typer

from gateway.policy.secrets import MISSING_FILE_PREFIX

UNSET_HERE = "unset-here"  # stands in for the value while the bundle compiles


class OperatorEnvironment(Mapping[str, str]):
    """`env` where a missing non-GATEWAY_* name reads as a placeholder, remembered."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        self._env = env
        self.unset: set[str] = set()

    def __getitem__(self, name: str) -> str:
        if name.startswith("GATEWAY_"):
            return self._env[name]  # the gateway's own settings: read as they are
        value = self._env.get(name)
        if value:
            return value
        self.unset.add(name)  # unset or empty here: the server's own may hold it
        return UNSET_HERE

    def __contains__(self, name: object) -> bool:
        return name in self._env or (isinstance(name, str) and not name.startswith("GATEWAY_"))

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)

    def warn_unset(self) -> None:
        for name in sorted(self.unset):
            if name.startswith(MISSING_FILE_PREFIX):
                typer.echo(
                    f"warning: secret file {name.removeprefix(MISSING_FILE_PREFIX)} does not "
                    "exist here; each gateway reads it on its own host and cannot enforce a "
                    "version without it",
                    err=True,
                )
                continue
            typer.echo(
                f"warning: environment variable {name} is not set here; each gateway "
                "resolves it from its own environment and cannot enforce a version "
                "without it",
                err=True,
            )
