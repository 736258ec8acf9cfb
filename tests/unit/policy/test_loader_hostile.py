"""Hostile or odd YAML in a policy folder: a located error, quickly, never a traceback."""

import os
import subprocess
from pathlib import Path

import pytest

from gateway.policy.errors import PolicyInvalid
from gateway.policy.loader import MAX_FILE_BYTES, MAX_TEXT_CHARS, load_bundle
from gateway.policy.store import load_policy_dir
from tests.support.processes import GATEWAY

HEAD = """\
providers:
  demo: {type: mock}
models:
  small: {deployments: [{provider: demo, model: m}]}
teams:
"""


def bundle(tmp_path: Path, **files: str) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def issues(directory: Path) -> list[str]:
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_dir(directory, {})
    return [str(issue).replace(f"{directory}/", "") for issue in caught.value.issues]


def alias_bomb(levels: int = 6) -> str:
    """About 400 bytes standing for 9**levels values once every alias is expanded."""
    lines = ["  a:", '    models: &a0 ["l","l","l","l","l","l","l","l","l"]']
    for i in range(1, levels + 1):
        lines.append(f"    x{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return HEAD + "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("teams", "expected"),
    [
        (
            "  a: &base {models: [small]}\n  b:\n    <<: *base\n",
            "p.yaml:8: teams.b.<<: YAML merge keys (<<) are not supported; write the keys out",
        ),
        (
            "  a: {models: [!ref small]}\n",
            "p.yaml:6: teams.a.models[0]: YAML tag !ref is not supported (policy files are plain data)",
        ),
        (
            "  !ref a: {models: [small]}\n",
            "p.yaml:6: teams: YAML tag !ref is not supported (policy files are plain data)",
        ),
        (
            "  a: !team {models: [small]}\n",
            "p.yaml:6: teams.a: YAML tag !team is not supported (policy files are plain data)",
        ),
        (
            "  a: {models: [small], note: !!binary aGVsbG8=}\n",
            "p.yaml:6: teams.a.note: YAML tag !!binary is not supported (policy files are plain data)",
        ),
        (
            "  a: &a {models: [small], clients: *a}\n",
            "p.yaml:6: teams.a.clients: alias refers to a value that contains it (recursive YAML)",
        ),
        (
            "  a: {models: [small], limits: {rpm: 100000000000000000000000}}\n",
            "p.yaml:6: teams.a.limits.rpm: integer out of range "
            "(must be -9223372036854775808 to 9223372036854775807)",
        ),
        (
            "  a: {models: [small], limits: {rpm: -9223372036854775809}}\n",
            "p.yaml:6: teams.a.limits.rpm: integer out of range "
            "(must be -9223372036854775808 to 9223372036854775807)",
        ),
        (
            "  a: {models: [small], limits: {rpm: 9223372036854775808}}\n",
            "p.yaml:6: teams.a.limits.rpm: integer out of range "
            "(must be -9223372036854775808 to 9223372036854775807)",
        ),
        (
            "  a: {models: [small], note: =}\n",
            "p.yaml:6: teams.a.note: a bare '=' means something special in YAML; put it in quotes",
        ),
        (
            "  a: {models: [small], note: 2024-13-45}\n",
            "p.yaml:6: teams.a.note: cannot read '2024-13-45': month must be in 1..12",
        ),
    ],
)
def test_a_yaml_construct_that_is_not_plain_data_is_a_located_error(tmp_path, teams, expected):
    """Merge keys, tags, recursive aliases and huge integers name file, line and field."""
    assert issues(bundle(tmp_path, **{"p.yaml": HEAD + teams})) == [expected]


def test_the_largest_64_bit_integer_is_still_accepted(tmp_path):
    """The range check refuses only what JSON and bigint columns cannot hold."""
    text = HEAD.replace("model: m}", "model: m, priority: 9223372036854775807}") + "  a: {}\n"
    loaded = load_bundle(bundle(tmp_path, **{"p.yaml": text}))
    assert loaded.raw["models"]["small"]["deployments"][0]["priority"] == 2**63 - 1


def test_a_quoted_merge_key_is_an_ordinary_key(tmp_path):
    """Only the bare `<<` is YAML's merge key; quoted, it is a (here unknown) name."""
    text = HEAD + '  a: {models: [small], "<<": 1}\n'
    assert issues(bundle(tmp_path, **{"p.yaml": text})) == ["p.yaml:6: teams.a.<<: unknown key"]


def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path):
    """A billion-laughs file stops after MAX_NODES values, with file, line and field."""
    found = issues(bundle(tmp_path, **{"p.yaml": alias_bomb()}))
    assert len(found) == 1
    assert found[0].startswith("p.yaml:7: teams.a.x5")
    assert found[0].endswith(
        "the file expands to more than 100000 values (aliases count each time they are used)"
    )


def test_one_long_string_repeated_through_aliases_is_refused(tmp_path):
    """A short file cannot stand for more than MAX_TEXT_CHARS of text."""
    long = "x" * (MAX_TEXT_CHARS // 16)
    text = f"{HEAD}  a: {{models: [small], note: &s {long}}}\n  b: [{', '.join(['*s'] * 17)}]\n"
    found = issues(bundle(tmp_path, **{"p.yaml": text}))
    assert found == [
        f"p.yaml:6: teams.b[14]: the file expands to more than {MAX_TEXT_CHARS} characters "
        "of text (aliases count each time they are used)"
    ]


def test_deep_nesting_is_refused_while_parsing(tmp_path):
    """PyYAML recurses per level: a deep file is an error, not a RecursionError."""
    text = HEAD + "  a: {models: [small], note: " + "[" * 200 + "]" * 200 + "}\n"
    assert issues(bundle(tmp_path, **{"p.yaml": text})) == [
        "p.yaml:6: nested deeper than 64 levels"
    ]


def test_deep_nesting_built_from_aliases_is_refused(tmp_path):
    """Each anchor is 25 levels deep, but expanding them stacks three of them."""
    nest = "[" * 25 + "{}" + "]" * 25
    text = HEAD + "  a: {models: [small]}\n"
    text += f"d0: &d0 {nest}\n"
    text += "d1: &d1 " + nest.replace("{}", "*d0") + "\n"
    text += "d2: " + nest.replace("{}", "*d1") + "\n"
    found = issues(bundle(tmp_path, **{"p.yaml": text}))
    assert len(found) == 1
    assert found[0].startswith("p.yaml:7: d2")
    assert found[0].endswith(
        "the file expands to values nested deeper than 64 levels "
        "(aliases count each time they are used)"
    )


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path):
    """A 4 MiB + 1 byte file is named and not parsed."""
    text = HEAD + "#" * (MAX_FILE_BYTES - len(HEAD)) + "\n"
    assert issues(bundle(tmp_path, **{"p.yaml": text})) == ["p.yaml: file is larger than 4 MiB"]


def test_a_control_character_names_its_line(tmp_path):
    """YAML's reader error has no mark; the line is counted from its offset."""
    text = HEAD + "  a: {models: [small]}\x00\n"
    assert issues(bundle(tmp_path, **{"p.yaml": text})) == [
        "p.yaml:6: YAML syntax error: unacceptable character #x0000: "
        "special characters are not allowed"
    ]


def test_a_hostile_file_does_not_hide_errors_in_the_others(tmp_path):
    """Every file is still read: the bomb and a duplicate key elsewhere are both listed."""
    directory = bundle(
        tmp_path,
        **{"a.yaml": alias_bomb(), "b.yaml": "routing: {}\nrouting: {}\n"},
    )
    found = issues(directory)
    assert len(found) == 2
    assert found[0].startswith("a.yaml:7: teams.a.x5")
    assert found[1] == "b.yaml:2: routing: duplicate key"


def test_policy_check_lists_hostile_files_and_exits_1_without_a_traceback(tmp_path):
    """`gateway policy check DIR` prints file:line for each and exits 1."""
    folder = tmp_path / "p"
    folder.mkdir()
    bundle(
        folder,
        **{
            "a.yaml": alias_bomb(),
            "b.yaml": "guardrails:\n  g: &g {x: *g}\n",
            "c.yaml": "routing: {<<: {timeout_s: 3}}\n",
            "d.yaml": "timezone: !ref UTC\n",
        },
    )
    done = subprocess.run(
        [GATEWAY, "policy", "check", "p"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    for located in ("p/a.yaml:7:", "p/b.yaml:2:", "p/c.yaml:1:", "p/d.yaml:1:"):
        assert located in done.stderr, done.stderr


SECRET_LINE = "root:$6$saltsalt$hashhashhashhash:19000:0:99999:7:::"


def test_a_link_to_a_file_outside_the_folder_is_refused_unread(tmp_path):
    """`ln -s /etc/shadow policies/zz.yaml`: named as an error, its lines never printed."""
    outside = tmp_path / "shadow"
    outside.write_text(f"{SECRET_LINE}\nnobody: {SECRET_LINE}\n")
    folder = tmp_path / "p"
    folder.mkdir()
    bundle(folder, **{"a.yaml": HEAD + "  t: {models: [small]}\n"})
    (folder / "zz.yaml").symlink_to(outside)
    found = issues(folder)
    assert found == ["zz.yaml: is a symbolic link to outside the policy folder; it is not read"]
    assert "saltsalt" not in "".join(found)


def test_a_link_within_the_folder_is_read(tmp_path):
    """A ConfigMap links each file into `..data/`, itself a link: that is still read."""
    folder = tmp_path / "p"
    (folder / "..2026_01_01").mkdir(parents=True)
    (folder / "..2026_01_01" / "a.yaml").write_text(HEAD + "  t: {models: [small]}\n")
    (folder / "..data").symlink_to("..2026_01_01")
    (folder / "a.yaml").symlink_to("..data/a.yaml")
    assert list(load_policy_dir(folder, {}).teams) == ["t"]


def test_a_file_that_is_not_regular_is_refused_unread(tmp_path):
    """A FIFO would block the reader forever; it is named, not opened."""
    folder = bundle(tmp_path, **{"a.yaml": HEAD + "  t: {models: [small]}\n"})
    os.mkfifo(folder / "fifo.yaml")
    (folder / "null.yaml").symlink_to(folder / "fifo.yaml")
    assert issues(folder) == [
        "fifo.yaml: is not a regular file; it is not read",
        "null.yaml: is not a regular file; it is not read",
    ]


def test_a_long_unknown_key_is_cut_in_the_error(tmp_path):
    """A stray file's lines parsed as keys are not echoed whole."""
    key = "x" * 500
    found = issues(bundle(tmp_path, **{"a.yaml": f"{key}: 1\n"}))
    assert found == [f"a.yaml:1: {'x' * 40}…: unknown key"]
