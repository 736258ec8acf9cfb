"""External issuers' claims mapped to a Principal: team, subject, client, scopes, time checks."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.auth.claims import (
    MSG_EXPIRED,
    MSG_NOT_YET_VALID,
    MSG_WRONG_AUDIENCE,
    MSG_WRONG_ISSUER,
    Refused,
)
from gateway.auth.external import (
    MSG_NO_TEAM,
    IssuerUnavailable,
    SeveralTeams,
    claim_at,
    client_id_of,
    principal_from_claims,
    requested_scopes,
    scopes_of,
    team_of_claims,
)
from gateway.auth.principal import NO_TEAM
from gateway.policy.schema import IssuerSpec

ISSUER = "https://idp.example.com/"
ALL_SCOPES = ["gateway:invoke", "gateway:admin", "gateway:finance"]
NOW = 1_800_000_000.0
CLIENTS = {"search-backend": "search"}


def spec(**changes: Any) -> IssuerSpec:
    return IssuerSpec(issuer=ISSUER, audience="llm-gateway", **changes)


def claims(**changes: Any) -> dict[str, Any]:
    base = {
        "iss": ISSUER,
        "aud": "llm-gateway",
        "sub": "user-1",
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 600,
        "team": "search",
    }
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


# --- dotted paths ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("team", "t"),
        ("realm_access.roles", ["a", "b"]),
        ("resource_access.gw.roles", ["r"]),
        ("https://example.com/team", "namespaced"),
        ("realm_access.missing", None),
        ("team.deeper", None),
        ("nothing", None),
    ],
)
def test_claim_at_follows_dotted_paths(path: str, expected: Any) -> None:
    """A dotted path walks nested objects; a literal key containing dots counts when the
    path finds nothing nested (a namespaced claim)."""
    token = {
        "team": "t",
        "realm_access": {"roles": ["a", "b"]},
        "resource_access": {"gw": {"roles": ["r"]}},
        "https://example.com/team": "namespaced",
    }
    assert claim_at(token, path) == expected


def test_a_flat_claim_spelling_the_path_does_not_override_the_nested_one() -> None:
    """Probe p15: with `team_claim: realm_access.roles`, a top-level claim literally named
    so chose the team billed."""
    token = {"realm_access": {"roles": ["search"]}, "realm_access.roles": ["admins"]}
    assert claim_at(token, "realm_access.roles") == ["search"]
    assert claim_at({"realm_access.roles": ["admins"]}, "realm_access.roles") == ["admins"]


# --- team -------------------------------------------------------------------------------


def test_a_string_team_claim_is_the_team() -> None:
    """Without a team_map the claim's string is the team's name."""
    assert team_of_claims(claims(team="research"), spec(), CLIENTS) == "research"


def test_a_string_claim_goes_through_team_map() -> None:
    """With a team_map a string claim is looked up: azp → team, say."""
    mapping = spec(team_claim="azp", team_map={"app-123": "search"})
    assert team_of_claims(claims(azp="app-123"), mapping, {}) == "search"


def test_with_a_team_map_unmapped_strings_name_no_team() -> None:
    """A value the map does not name is not taken as a team name of its own."""
    mapping = spec(team_claim="azp", team_map={"app-123": "search"})
    assert team_of_claims(claims(azp="other-app"), mapping, {}) is None


def test_a_list_claim_maps_through_team_map() -> None:
    """Keycloak realm roles: the one mapped value names the team; unmapped roles are ignored."""
    mapping = spec(
        team_claim="realm_access.roles",
        team_map={"llm-search": "search", "llm-research": "research"},
    )
    token = claims(team=None, realm_access={"roles": ["offline", "llm-research", 7]})
    assert team_of_claims(token, mapping, {}) == "research"


def test_a_list_claim_with_two_mapped_teams_is_refused_whatever_the_order() -> None:
    """Groups mapping to two teams get 403 ambiguous_team, never the alphabetically first."""
    mapping = spec(team_claim="groups", team_map={"grp-g": "oa-g", "grp-a": "oa-a"})
    for groups in (["grp-g", "grp-a"], ["grp-a", "grp-g"]):
        with pytest.raises(SeveralTeams) as refused:
            team_of_claims(claims(team=None, groups=groups), mapping, {})
        error = refused.value
        assert (error.status, error.type, error.code) == (403, "permission_error", "ambiguous_team")
        assert error.message == (
            "The access token's groups claim maps to several teams (oa-a, oa-g); "
            "the gateway needs exactly one."
        )


def test_values_mapping_to_the_same_team_are_one_team() -> None:
    mapping = spec(team_claim="roles", team_map={"gw.user": "search", "gw.admin": "search"})
    token = claims(team=None, roles=["gw.admin", "gw.user"])
    assert team_of_claims(token, mapping, {}) == "search"


def test_a_list_claim_without_team_map_names_the_one_team_among_its_values() -> None:
    """groups: ["oa-g"] is team oa-g, like the string "oa-g"; other groups are ignored."""
    teams = {"oa-g", "search"}
    groups = spec(team_claim="groups")
    for value in (["oa-g"], ["Everyone", "oa-g", "vpn-users"], "oa-g"):
        assert team_of_claims(claims(team=None, groups=value), groups, {}, teams) == "oa-g"


def test_a_list_claim_without_team_map_naming_two_teams_is_refused() -> None:
    groups = spec(team_claim="groups")
    token = claims(team=None, groups=["search", "oa-g", "other"])
    with pytest.raises(SeveralTeams, match=r"\(oa-g, search\)"):
        team_of_claims(token, groups, {}, {"oa-g", "search"})


def test_a_list_claim_without_team_map_naming_no_team_falls_back_to_the_client() -> None:
    """No value is a team: the client fallback applies, else no team."""
    groups = spec(team_claim="groups")
    token = claims(team=None, groups=["Everyone"], client_id="search-backend")
    assert team_of_claims(token, groups, CLIENTS, {"search"}) == "search"
    assert team_of_claims(claims(team=None, groups=["Everyone"]), groups, {}, {"search"}) is None
    assert team_of_claims(claims(team=None, groups=[]), groups, {}, {"search"}) is None


def test_the_refusal_names_at_most_five_teams() -> None:
    teams = [f"t{i}" for i in range(8)]
    with pytest.raises(SeveralTeams) as refused:
        team_of_claims(claims(team=None, groups=teams), spec(team_claim="groups"), {}, teams)
    assert "(t0, t1, t2, t3, t4 and 3 more)" in refused.value.message


TEAM_NAMES = st.sampled_from(["oa-a", "oa-g", "search", "research"])
OTHER_VALUES = st.one_of(st.sampled_from(["Everyone", "vpn", "grp-x", ""]), st.integers())


@given(
    values=st.lists(st.one_of(TEAM_NAMES, OTHER_VALUES), max_size=8),
    mapped=st.booleans(),
    order=st.randoms(use_true_random=False),
)
def test_a_list_claim_names_its_one_team_or_is_refused(
    values: list[Any], mapped: bool, order: Any
) -> None:
    """Whatever the values and their order: exactly one team → it; none → None; more → 403."""
    teams = {"oa-a", "oa-g", "search", "research"}
    # With a map, each team is reached through a group name of its own.
    issuer = spec(team_claim="groups", team_map={f"grp-{t}": t for t in teams} if mapped else None)
    sent = [f"grp-{v}" if mapped and v in teams else v for v in values]
    order.shuffle(sent)
    named = {v for v in values if isinstance(v, str) and v in teams}
    token = claims(team=None, groups=sent)
    if len(named) > 1:
        with pytest.raises(SeveralTeams):
            team_of_claims(token, issuer, {}, teams)
    else:
        assert team_of_claims(token, issuer, {}, teams) == next(iter(named), None)


def test_an_ambiguous_token_with_a_bad_scope_claim_is_a_401_first() -> None:
    """Every 401 check runs before the team: a malformed token is never a 403."""
    token = claims(team=None, groups=["oa-a", "oa-g"], scope=7)
    with pytest.raises(Refused):
        principal_from_claims(token, spec(team_claim="groups"), {}, NOW, teams={"oa-a", "oa-g"})


def test_principal_from_claims_maps_a_groups_list_to_a_policy_team() -> None:
    token = claims(team=None, groups=["Everyone", "oa-g"])
    principal = principal_from_claims(token, spec(team_claim="groups"), {}, NOW, teams={"oa-g"})
    assert principal.team == "oa-g"


def test_a_list_with_no_mapped_value_falls_back_to_the_client() -> None:
    mapping = spec(team_claim="roles", team_map={"gw.search": "search"})
    token = claims(team=None, roles=["Other.Role", 7], azp="search-backend")
    assert team_of_claims(token, mapping, CLIENTS) == "search"


@pytest.mark.parametrize("claim", ["client_id", "azp", "appid", "cid"])
def test_no_team_claim_falls_back_to_the_policys_client_team(claim: str) -> None:
    """Okta `cid`, Entra `appid`/`azp`, RFC 9068 `client_id`: a team client id gives the team."""
    token = claims(team=None, **{claim: "search-backend"})
    assert team_of_claims(token, spec(), CLIENTS) == "search"


def test_client_id_claim_setting_picks_the_claim() -> None:
    token = claims(team=None, azp="someone-else", app="search-backend")
    assert client_id_of(token, spec(client_id_claim="app")) == "search-backend"
    assert team_of_claims(token, spec(client_id_claim="app"), CLIENTS) == "search"


def test_client_id_default_order() -> None:
    """client_id before azp before appid before cid."""
    assert client_id_of(claims(azp="b", cid="d", client_id="a"), spec()) == "a"
    assert client_id_of(claims(cid="d", appid="c"), spec()) == "c"
    assert client_id_of(claims(), spec()) is None


# --- scopes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"scope": "gateway:invoke gateway:admin"}, {"gateway:invoke", "gateway:admin"}),
        ({"scp": "gateway:finance"}, {"gateway:finance"}),
        ({"scp": ["gateway:invoke", "gateway:finance"]}, {"gateway:invoke", "gateway:finance"}),
        ({"scope": "gateway:admin", "scp": ["gateway:invoke"]}, {"gateway:admin"}),
        ({"scope": "", "scp": "gateway:admin"}, {"gateway:admin"}),
        ({}, {"gateway:invoke"}),
        ({"scope": ""}, {"gateway:invoke"}),
        ({"scp": []}, {"gateway:invoke"}),
    ],
    ids=[
        "scope-string",
        "scp-string",
        "scp-list",
        "scope-before-scp",
        "empty-scope-then-scp",
        "none-defaults",
        "empty-defaults",
        "empty-list-defaults",
    ],
)
def test_scopes_from_scope_or_scp(extra: dict[str, Any], expected: set[str]) -> None:
    assert requested_scopes(claims(**extra), spec()) == expected
    assert scopes_of(claims(**extra), spec(allowed_scopes=ALL_SCOPES)) == expected


@pytest.mark.parametrize(
    ("allowed", "asked", "granted"),
    [
        (None, "gateway:invoke gateway:admin", {"gateway:invoke"}),  # default: invoke only
        (None, "gateway:admin", set()),
        (None, "gateway:finance openid profile", set()),
        (["gateway:invoke", "gateway:admin"], "gateway:invoke gateway:admin", ALL_SCOPES[:2]),
        (["gateway:finance"], "gateway:invoke gateway:finance", {"gateway:finance"}),
        ([], "gateway:invoke", set()),
        (ALL_SCOPES, "gateway:admin gateway:finance", {"gateway:admin", "gateway:finance"}),
    ],
)
def test_an_issuer_grants_only_its_allowed_scopes(
    allowed: list[str] | None, asked: str, granted: Any
) -> None:
    """A token asking for more than its issuer's allowed_scopes gets only the intersection."""
    issuer = spec() if allowed is None else spec(allowed_scopes=allowed)
    assert scopes_of(claims(scope=asked), issuer) == set(granted)
    principal = principal_from_claims(claims(scope=asked), issuer, CLIENTS, NOW)
    assert principal.scopes == set(granted)


def test_scope_claim_setting_and_default_scopes() -> None:
    """A configured claim is read alone; a token with none gets the issuer's default_scopes."""
    custom = spec(
        scope_claim="permissions", default_scopes=["gateway:finance"], allowed_scopes=ALL_SCOPES
    )
    token = claims(scope="gateway:admin", permissions=["gateway:invoke"])
    assert scopes_of(token, custom) == {"gateway:invoke"}
    assert scopes_of(claims(scope="gateway:admin"), custom) == {"gateway:finance"}


@pytest.mark.parametrize("value", [5, {"a": 1}, ["ok", 3], True])
def test_a_scope_claim_of_another_type_is_refused(value: Any) -> None:
    with pytest.raises(Refused):
        scopes_of(claims(scope=value), spec())


# --- the whole principal and the registered claims ------------------------------------


def test_principal_carries_team_subject_client_scopes_and_expiry() -> None:
    token = claims(azp="search-backend", scp=["gateway:invoke"])
    principal = principal_from_claims(token, spec(), CLIENTS, NOW)
    assert (principal.team, principal.subject, principal.client_id) == (
        "search",
        "user-1",
        "search-backend",
    )
    assert principal.scopes == {"gateway:invoke"}
    assert (principal.issuer, principal.expires_at) == (ISSUER, NOW + 600)


def test_subject_claim_setting_and_client_fallback() -> None:
    """A configured subject claim is used; an app token without it is its client."""
    configured = spec(subject_claim="oid")
    assert principal_from_claims(claims(oid="o-1"), configured, {}, NOW).subject == "o-1"
    app_token = claims(sub=None, azp="search-backend")
    assert principal_from_claims(app_token, configured, {}, NOW).subject == "search-backend"


@pytest.mark.parametrize(
    ("changes", "message", "reason"),
    [
        ({"iss": "https://idp.example.com"}, MSG_WRONG_ISSUER, "wrong issuer"),
        ({"aud": "someone-else"}, MSG_WRONG_AUDIENCE, "wrong audience"),
        ({"aud": ["a", "b"]}, MSG_WRONG_AUDIENCE, "wrong audience"),
        ({"aud": None}, MSG_WRONG_AUDIENCE, "wrong audience"),
        ({"exp": None}, None, "exp missing"),
        ({"exp": "tomorrow"}, None, "exp is not a number"),
        ({"exp": int(NOW) - 31}, MSG_EXPIRED, "expired"),
        ({"nbf": int(NOW) + 31}, MSG_NOT_YET_VALID, "nbf in the future"),
        ({"iat": int(NOW) + 31}, None, "iat in the future"),
        ({"team": None}, MSG_NO_TEAM, "no team"),
        ({"sub": None}, None, "sub missing"),
    ],
)
def test_registered_claims_are_checked(
    changes: dict[str, Any], message: str | None, reason: str
) -> None:
    with pytest.raises(Refused) as refused:
        principal_from_claims(claims(**changes), spec(), {}, NOW)
    assert reason in refused.value.reason
    if message is not None:
        assert refused.value.message == message


@pytest.mark.parametrize(
    ("issuer_leeway", "default_leeway", "skew", "is_accepted"),
    [
        (None, 30, 29, True),
        (None, 30, 31, False),
        (None, 120, 100, True),  # GATEWAY_TOKEN_LEEWAY_S raised
        (None, 0, 1, False),
        (5, 120, 10, False),  # the issuer's own leeway_s wins over the setting
        (60, 0, 59, True),
    ],
)
def test_leeway_is_the_issuers_else_the_setting(
    issuer_leeway: int | None, default_leeway: int, skew: int, *, is_accepted: bool
) -> None:
    token = claims(exp=int(NOW) - skew)
    issuer = spec(leeway_s=issuer_leeway)
    if is_accepted:
        assert principal_from_claims(token, issuer, {}, NOW, default_leeway).team == "search"
    else:
        with pytest.raises(Refused, match="expired"):
            principal_from_claims(token, issuer, {}, NOW, default_leeway)


def test_leeway_accepts_small_skew_and_audience_lists() -> None:
    """Within the leeway (30 s default) a just-expired or not-quite-valid token passes."""
    token = claims(
        exp=int(NOW) - 29, nbf=int(NOW) + 29, iat=int(NOW) + 29, aud=["x", "llm-gateway"]
    )
    assert principal_from_claims(token, spec(), {}, NOW).team == "search"
    with pytest.raises(Refused):
        principal_from_claims(token, spec(leeway_s=0), {}, NOW)


def test_any_configured_audience_matches() -> None:
    two = IssuerSpec(issuer=ISSUER, audience=["api://gw", "llm-gateway"])
    assert principal_from_claims(claims(aud="api://gw"), two, {}, NOW).team == "search"


@pytest.mark.parametrize(
    ("retry_in_s", "header"), [(0.0, "1"), (0.2, "1"), (4.2, "5"), (10.0, "10")]
)
def test_issuer_unavailable_is_a_retryable_503(retry_in_s: float, header: str) -> None:
    """503 api_error with retry-after in whole seconds, rounded up (a retry sooner would
    meet the refetch limit), at least 1; the issuer goes to the access line only."""
    error = IssuerUnavailable(ISSUER, retry_in_s)
    assert (error.status, error.type, error.code) == (503, "api_error", "issuer_unavailable")
    assert error.headers == {"retry-after": header}
    assert ISSUER not in error.message and "signing keys" in error.message
    assert error.detail is not None and ISSUER in error.detail


def test_a_token_without_a_team_may_still_administer_or_read_reports() -> None:
    """Only inference is bound to a team: a finance analyst's or an admin's token naming
    no team is accepted (in no team); one that may also invoke is still refused."""
    issuer = spec(allowed_scopes=["gateway:invoke", "gateway:finance", "gateway:admin"])
    for scope in ("gateway:finance", "gateway:admin", "gateway:finance gateway:admin"):
        principal = principal_from_claims(claims(team=None, scope=scope), issuer, {}, NOW)
        assert principal.team == NO_TEAM
        assert principal.scopes == set(scope.split())
    with pytest.raises(Refused) as refused:
        principal_from_claims(
            claims(team=None, scope="gateway:finance gateway:invoke"), issuer, {}, NOW
        )
    assert refused.value.message == MSG_NO_TEAM
