"""A provider's redaction secrets: its keys and every value its references resolved to."""

from __future__ import annotations

from gateway.policy.compiled import ProviderConfig
from gateway.policy.secrets import ReferenceRules, redaction_secrets, resolve_references

ENV = {"PATH_TOKEN": "PTSECRETzz91", "SHORT_TOKEN": "v1", "OAI_API_KEY": "sk-oai-0123456789"}


def test_a_reference_in_api_bases_path_is_reported_as_substituted():
    """The value a `${VAR}` in api_base's path stands for is handed back, as a key's is."""
    found: list[str] = []
    value, problems = resolve_references(
        "http://up/oai/${PATH_TOKEN}/v1", "api_base", ENV, ReferenceRules(), substituted=found
    )
    assert (value, problems, found) == ("http://up/oai/PTSECRETzz91/v1", [], ["PTSECRETzz91"])


def test_escapes_and_refused_references_are_no_secret():
    found: list[str] = []
    resolve_references(
        "$${PATH_TOKEN}/${NOT_SET_TOKEN}", "api_base", ENV, ReferenceRules(), substituted=found
    )
    assert found == []


def test_the_config_holds_its_keys_and_references_longest_first_short_ones_left_out():
    """A value shorter than 4 characters (`v1`) would garble every message: it is not one."""
    config = ProviderConfig(
        "p", "openai", api_key="sk-oai-0123456789", references=("PTSECRETzz91", "v1")
    )
    assert config.secrets == ("sk-oai-0123456789", "PTSECRETzz91")
    assert "PTSECRETzz91" not in repr(config)


def test_duplicates_are_kept_once():
    assert redaction_secrets(["abcd", None, "abcd", "", "xyz"]) == ("abcd",)


def test_a_value_is_also_cut_as_a_urls_path_spells_it():
    """aiohttp sends `tok en/x` in a path as `tok%20en/x`: an upstream quoting the path
    quotes that spelling."""
    assert set(redaction_secrets(["tok en/x"])) == {"tok en/x", "tok%20en/x", "tok%20en%2Fx"}
