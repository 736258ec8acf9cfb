"""Which `${...}` references a policy may hold, and what they resolve to.

Owns the operator's exposure rules: `${VAR}` resolves only from environment
variables whose names match `GATEWAY_SECRET_ENV_ALLOW` (comma-separated glob
patterns, default `*_API_KEY,*_KEY,*_TOKEN`) and never from a `GATEWAY_*`
name, whatever the patterns say (the database URL, Redis password and the
like are the gateway's, not a policy author's). `${file:/path}` reads a mounted
secret file (a Kubernetes or Docker secret), only in a secret field (`api_key`
and the AWS keys) and only under a directory of `GATEWAY_SECRET_FILE_DIRS`
(default `/run/secrets,/var/run/secrets`), checked after following symlinks, so
a policy author cannot read `/etc/shadow` or the gateway's own database.
The gateway's own cloud identity is out of reach the same way, unless the operator
names it exactly: the variables its SDKs read (`AWS_SECRET_ACCESS_KEY`,
`AWS_SESSION_TOKEN`, `AZURE_CLIENT_SECRET`…: `AMBIENT_CREDENTIALS`, which a glob
such as `*_KEY` does not reach) and the service-account token folders under
/var/run/secrets (Kubernetes', EKS's IRSA, Azure workload identity's:
`AMBIENT_TOKEN_DIRS`, which a folder above them does not reach).
`${VAR}` stands only where a secret belongs: a secret field, or the path of
`api_base` (its host is refused elsewhere, `schema.py` and `compiled.py`); in
any other field (`api_version`, `region`) it would carry a key into a URL's
query string or a log line, so it is an error there. A `${` that starts no valid
reference (`${NAME:-default}`, unclosed, empty) is an error in a provider's field, never
text sent as written.
Values are never part of a message. Reading a file is the only I/O, and it is
handed in (`read_file`) so the rules stay testable without a disk.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

ENV_ALLOW_VAR = "GATEWAY_SECRET_ENV_ALLOW"
FILE_DIRS_VAR = "GATEWAY_SECRET_FILE_DIRS"
DEFAULT_ENV_ALLOW = ("*_API_KEY", "*_KEY", "*_TOKEN")
DEFAULT_FILE_DIRS = ("/run/secrets", "/var/run/secrets")
OWN_PREFIX = "GATEWAY_"
# The variables the gateway's own cloud identity lives in (boto3's, the Azure and Google
# SDKs', a CI runner's OIDC request token): a policy may name one only when
# GATEWAY_SECRET_ENV_ALLOW lists it by its exact name, never through a glob (the default
# `*_KEY`, `*_TOKEN` match the first two), or a policy author could send the gateway's
# identity to an `api_base` of theirs.
AMBIENT_CREDENTIALS = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_BEARER_TOKEN_BEDROCK",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_CERTIFICATE_PASSWORD",
        "AZURE_PASSWORD",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "ACTIONS_RUNTIME_TOKEN",
    }
)
# Where Kubernetes mounts the pod's own identity tokens (its service account; EKS's IRSA
# web-identity token, exchangeable for the pod's IAM role; Azure workload identity's):
# read only when GATEWAY_SECRET_FILE_DIRS names that folder (or one inside it) itself.
AMBIENT_TOKEN_DIRS = tuple(
    Path(root, folder)
    for root in ("/var/run/secrets", "/run/secrets")
    for folder in (
        "kubernetes.io/serviceaccount",
        "eks.amazonaws.com/serviceaccount",
        "azure/tokens",
    )
)
SECRET_FIELDS = frozenset({"api_key", "aws_access_key_id", "aws_secret_access_key"})
# Fields a `${VAR}` may stand in: the secret fields, and api_base (its path only).
ENV_REFERENCE_FIELDS = SECRET_FIELDS | {"api_base"}
MAX_SECRET_FILE_BYTES = 64 * 1024  # a key or a certificate; anything larger is a mistake
# A provider's redaction secrets are at least this long. A shorter value (`v1`, `us`, `x`)
# is no secret anyone could keep (a few thousand guesses), and replacing it everywhere
# would garble the very upstream text an operator reads (`v1/chat` in every message). The
# same minimum litellm's client always used for its keys.
MIN_SECRET_CHARS = 4

# `$${` writes a literal `${` (as `$$` does in Docker Compose and Kubernetes), so a policy can
# hold the text `${NAME}` (a guardrail keyword, a pattern) without it being a reference.
ESCAPE, ESCAPED = "$${", "${"
# `stray` is any other `${`: a shell form (`${NAME:-x}`), an unclosed or empty one. In a
# provider's field it is an error (SPEC §1: what is no valid reference is refused), never
# text sent as written.
REFERENCE = re.compile(
    r"(?P<escape>\$\$\{)|\$\{(?:(?P<env>[A-Za-z_][A-Za-z0-9_]*)|file:(?P<file>[^}]*))\}"
    r"|(?P<stray>\$\{)"
)
# Beyond the providers a stray `${` is plain text (a pattern's `${ notes}`), unless it
# starts like a reference: a name or `file:`, as `${NAME:-default}` does.
_REFERENCE_LIKE = re.compile(r"\$\{(?:file:|[A-Za-z_])")
_PATTERN = re.compile(r"^[A-Za-z0-9_*?\[\]!-]+$")


# A secret file missing on this host is looked up in `env` under this prefix and its
# path: the CLI's environment (commands/operator_env.py) stands a placeholder in and
# warns, as for an unset `${VAR}`, since the file lives on the gateways' hosts; a
# server's environment holds no such name, so there it stays an error.
MISSING_FILE_PREFIX = "file:"


class SecretUnavailable(Exception):
    """A reference that cannot be resolved; the message names the reference, never a value."""


class SecretFileMissing(SecretUnavailable):
    """A secret file that does not exist on this host (its folder may not either)."""


@dataclass(frozen=True, slots=True)
class ReferenceRules:
    env_allow: tuple[str, ...] = DEFAULT_ENV_ALLOW
    file_dirs: tuple[Path, ...] = tuple(Path(d) for d in DEFAULT_FILE_DIRS)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ReferenceRules:
        """The rules of this environment; ValueError naming the variable when it is unusable."""
        try:
            raw = env.get(ENV_ALLOW_VAR)
            allow = parse_env_allow(raw) if raw is not None else DEFAULT_ENV_ALLOW
        except ValueError as error:
            raise ValueError(f"{ENV_ALLOW_VAR}: {error}") from None
        try:
            dirs = parse_file_dirs(env.get(FILE_DIRS_VAR, ",".join(DEFAULT_FILE_DIRS)))
        except ValueError as error:
            raise ValueError(f"{FILE_DIRS_VAR}: {error}") from None
        return cls(allow, dirs)


def parse_env_allow(text: str) -> tuple[str, ...]:
    """Comma-separated glob patterns (`*`, `?`, `[...]`); empty allows no variable at all."""
    patterns = tuple(p.strip() for p in text.split(",") if p.strip())
    for pattern in patterns:
        if not _PATTERN.match(pattern):
            raise ValueError(
                f"{pattern!r} is not a variable-name pattern (letters, digits, _ and * ? [ ])"
            )
    return patterns


def parse_file_dirs(text: str) -> tuple[Path, ...]:
    """Comma-separated absolute directories; empty allows no secret file at all."""
    dirs = tuple(d.strip() for d in text.split(",") if d.strip())
    for directory in dirs:
        if not os.path.isabs(directory) or ".." in Path(directory).parts:
            raise ValueError(f"{directory!r} must be an absolute path without '..'")
    return tuple(Path(os.path.normpath(d)) for d in dirs)


def is_env_name_allowed(name: str, patterns: tuple[str, ...]) -> bool:
    """May `${name}` resolve? Never a GATEWAY_* name; otherwise when a pattern matches.

    Names compare case-sensitively, as POSIX environments do; the GATEWAY_
    prefix is refused in any case, so `gateway_database_url` is not a way round.
    """
    if name.upper().startswith(OWN_PREFIX):
        return False
    if name in AMBIENT_CREDENTIALS:
        return name in patterns
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def is_under(path: Path, directories: tuple[Path, ...]) -> bool:
    return any(path == d or path.is_relative_to(d) for d in directories)


def file_refusal(path: str, directories: tuple[Path, ...]) -> str | None:
    """Why `${file:path}` may not be read (as written, before symlinks), or None."""
    if not path or not os.path.isabs(path):
        return f"${{file:{path}}}: the path must be absolute"
    if ".." in Path(path).parts:
        return f"${{file:{path}}}: the path must not contain '..'"
    normal = Path(os.path.normpath(path))
    if not is_under(normal, directories):
        return _outside(path, directories)
    if is_ambient_token(normal, directories):
        return _ambient_token(path)
    return None


def is_ambient_token(path: Path, directories: tuple[Path, ...]) -> bool:
    """Whether `path` lies in a service-account token folder (AMBIENT_TOKEN_DIRS) that no
    entry of `directories` names itself (an entry above it, such as the default
    /var/run/secrets, does not open it)."""
    for ambient in AMBIENT_TOKEN_DIRS:
        if is_under(path, (ambient,)):
            return not any(d == ambient or d.is_relative_to(ambient) for d in directories)
    return False


def _ambient_token(path: str) -> str:
    return (
        f"${{file:{path}}}: the gateway's own service-account token is refused unless "
        f"{FILE_DIRS_VAR} names its folder explicitly"
    )


def _outside(path: str, directories: tuple[Path, ...]) -> str:
    allowed = ", ".join(str(d) for d in directories) or "none"
    return f"${{file:{path}}}: secret files are read only under {FILE_DIRS_VAR} ({allowed})"


def read_secret_file(path: str, directories: tuple[Path, ...]) -> str:
    """The file's text without its final newline; SecretUnavailable saying why not.

    Symlinks are followed first and the real path checked again, so a link in
    a secrets folder cannot point at /etc/shadow (Kubernetes' own `..data`
    links stay inside the mount).
    """
    real = Path(os.path.realpath(path))
    real_dirs = tuple(Path(os.path.realpath(d)) for d in directories)
    if not is_under(real, real_dirs):
        raise SecretUnavailable(_outside(path, directories) + " (after following links)")
    if is_ambient_token(real, real_dirs):
        raise SecretUnavailable(_ambient_token(path) + " (after following links)")
    try:
        with real.open("rb") as file:
            data = file.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as error:
        unavailable = SecretFileMissing if error.errno == errno.ENOENT else SecretUnavailable
        raise unavailable(f"${{file:{path}}}: cannot read: {error.strerror}") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise SecretUnavailable(f"${{file:{path}}}: larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretUnavailable(f"${{file:{path}}}: not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")  # `echo key > file` adds one
    if not text:
        raise SecretUnavailable(f"${{file:{path}}}: the file is empty")
    return text


def _unset_or_empty(value: str | None) -> str:
    return "not set" if value is None else "empty"


def resolve_references(
    value: str,
    field: str,
    env: Mapping[str, str],
    rules: ReferenceRules,
    read_file: Callable[[str, tuple[Path, ...]], str] = read_secret_file,
    substituted: list[str] | None = None,
) -> tuple[str, list[str]]:
    """`value` with its references substituted, and a problem per reference it may not use.

    `field` is the provider field's name: `${VAR}` is for ENV_REFERENCE_FIELDS only,
    `${file:...}` for SECRET_FIELDS only. Each value substituted is appended to
    `substituted` when given: wherever it stands, it is the provider's secret
    (`redaction_secrets`).
    """
    problems: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        value = resolve(match)
        is_reference = match.group("escape") is None and match.group("stray") is None
        if is_reference and value and substituted is not None:
            substituted.append(value)
        return value

    def resolve(match: re.Match[str]) -> str:
        name, path = match.group("env"), match.group("file")
        if match.group("escape") is not None:
            return ESCAPED
        if match.group("stray") is not None:
            problems.append(_not_a_reference())
            return match[0]
        if name is not None:
            if field not in ENV_REFERENCE_FIELDS:
                problems.append(_misplaced(name))
                return ""
            if not is_env_name_allowed(name, rules.env_allow):
                problems.append(_refused_name(name, rules))
                return ""
            value = env.get(name)
            if not value:  # set but empty (compose's `${KEY:-}`) is no key either
                problems.append(f"environment variable {name} is {_unset_or_empty(value)}")
                return ""
            return value
        if field not in SECRET_FIELDS:
            problems.append(
                f"${{file:...}} is only for secret fields ({', '.join(sorted(SECRET_FIELDS))})"
            )
            return ""
        refusal = file_refusal(path, rules.file_dirs)
        if refusal is not None:
            problems.append(refusal)
            return ""
        try:
            return read_file(path, rules.file_dirs)
        except SecretFileMissing as error:
            if MISSING_FILE_PREFIX + path in env:
                return env[MISSING_FILE_PREFIX + path]
            problems.append(str(error))
            return ""
        except SecretUnavailable as error:
            problems.append(str(error))
            return ""

    resolved = REFERENCE.sub(substitute, value)
    if field in SECRET_FIELDS and _CONTROL.search(resolved):
        problems.append(_control_in_secret(field))
    return resolved, problems


# A C0 control character or DEL: no HTTP header may carry one (RFC 9110 §5.5), and every
# secret field goes into one (a key, an AWS signature's credential).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _control_in_secret(field: str) -> str:
    # Never the value, nor where in it: a secret's shape is the secret's.
    return (
        f"the value of {field} holds a control character (a line break, a tab, NUL): "
        "no HTTP header can carry it; write the secret on one line"
    )


def address_spellings(api_base: str | None) -> tuple[str, ...]:
    """How an upstream's error may quote where it runs (an internal address, which a
    team has no business learning): api_base's `host:port` as written, and its host
    alone when it is an address or a dotted name (a bare word such as `vllm` would cut
    that word out of every message)."""
    if not api_base:
        return ()
    try:
        address = urlsplit(api_base).netloc.rpartition("@")[2]
    except ValueError:
        return ()
    is_ipv6 = address.startswith("[")  # [fd00::5] or [fd00::5]:8000
    host = address[1 : address.find("]")] if is_ipv6 else address.rsplit(":", 1)[0]
    return (address, host) if "." in host or ":" in host else (address,)


def redaction_secrets(values: Iterable[str | None]) -> tuple[str, ...]:
    """What a provider's clients cut out of upstream text (client-facing errors, stream
    error events, log lines): its keys and every value a reference of its config
    resolved to, those of at least MIN_SECRET_CHARS, each once, longest first (a
    secret holding another is cut whole). A value is also cut as a URL's path spells it
    (percent-encoded, `/` kept or not): an upstream quoting the path it was asked for
    quotes it so."""
    kept = {value for value in values if value and len(value) >= MIN_SECRET_CHARS}
    spelled = {encoded for value in kept for encoded in (quote(value), quote(value, safe=""))}
    return tuple(sorted(kept | spelled, key=lambda value: (-len(value), value)))


def references_beyond_providers(
    raw: Mapping[str, Any],
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path, problem) for each `${...}` reference outside the providers section.

    Only a provider's fields are resolved (`resolve_references`, each of them); a
    reference anywhere else (a deployment's model, a guardrail's pattern, an issuer's
    audience, a team's clients) would be used as the literal text `${NAME}`, silently,
    and so would a malformed one such as `${NAME:-default}`. Plain text holding a `$`
    (or a `${` not followed by a name, as in a pattern's `${ notes}`) is no reference,
    nor is `$${NAME}` (the literal `${NAME}`)."""

    def walk(
        value: Any, path: tuple[str | int, ...]
    ) -> Iterator[tuple[tuple[str | int, ...], str]]:
        if isinstance(value, str):
            match = next((m for m in REFERENCE.finditer(value) if _is_reference_like(m)), None)
            if match is not None and match.group("stray") is not None:
                yield path, _not_a_reference()
            elif match is not None:
                yield path, _not_resolved_here(match[0])
        elif isinstance(value, dict):
            for key, item in value.items():
                yield from walk(item, (*path, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                yield from walk(item, (*path, index))

    for section, value in raw.items():
        if section != "providers":
            yield from walk(value, (section,))


def read_escapes_beyond_providers(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The bundle as it is enforced: outside the providers, each `$${` read as the literal
    `${` it writes (a provider's fields read it as they resolve, `resolve_references`)."""

    def literal(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(ESCAPE, ESCAPED)
        if isinstance(value, dict):
            return {key: literal(item) for key, item in value.items()}
        if isinstance(value, list):
            return [literal(item) for item in value]
        return value

    return {
        section: value if section == "providers" else literal(value)
        for section, value in raw.items()
    }


def _is_reference_like(match: re.Match[str]) -> bool:
    """A reference, or a stray `${` starting like one (beyond the providers)."""
    if match.group("escape") is not None:
        return False
    return match.group("stray") is None or bool(_REFERENCE_LIKE.match(match.string, match.start()))


def _not_a_reference() -> str:
    # The text after `${` is not repeated: in a secret field it may be the secret itself.
    return (
        "a ${ here starts no valid reference: a reference is ${NAME} (letters, digits and _, "
        "no shell form such as ${NAME:-default}) or ${file:/path}, closed by }; write $${ "
        "for the literal text ${"
    )


def _not_resolved_here(reference: str) -> str:
    secret_fields = ", ".join(sorted(SECRET_FIELDS))
    return (
        f"{reference} is not resolved here: a reference stands only in a provider's secret "
        f"field ({secret_fields}) or in the path of its api_base; write the value itself, "
        f"or $${reference[1:]} for the literal text {reference}"
    )


def _misplaced(name: str) -> str:
    secret_fields = ", ".join(sorted(SECRET_FIELDS))
    return (
        f"${{{name}}} is refused here: a reference stands only in a secret field "
        f"({secret_fields}) or in the path of api_base, never where its value would be "
        "sent or shown as plain text"
    )


def _refused_name(name: str, rules: ReferenceRules) -> str:
    if name.upper().startswith(OWN_PREFIX):
        return f"${{{name}}} is refused: the gateway's own {OWN_PREFIX}* settings are never exposed"
    if name in AMBIENT_CREDENTIALS:
        return (
            f"${{{name}}} is refused: it holds the gateway's own cloud identity; "
            f"{ENV_ALLOW_VAR} must list {name} by its exact name to allow it"
        )
    patterns = ",".join(rules.env_allow) or "nothing"
    return (
        f"${{{name}}} is refused: only variables matching {ENV_ALLOW_VAR} ({patterns}) "
        "may be referenced"
    )
