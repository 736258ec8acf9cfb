"""The example bundle: policies/ and the copy `gateway serve` writes where ./policies is
missing (gateway/policy/example/) are the same, and a fresh install reports no unknown
price."""

from pathlib import Path

from gateway.policy.store import load_policy_dir
from gateway.usage.pricing import PriceSource

REPO = Path(__file__).parents[3]
BUILT_IN = REPO / "gateway/policy/example"


def test_the_repository_example_is_the_built_in_one() -> None:
    """Editing one of the two without the other would give users two different starts."""
    shipped = {path.name: path.read_text() for path in BUILT_IN.glob("*.yaml")}
    assert shipped
    assert {path.name: path.read_text() for path in (REPO / "policies").glob("*.yaml")} == shipped


def test_every_example_deployment_has_a_price() -> None:
    """No `unknown_price` warning in `gateway report usage` on a fresh install."""
    policy = load_policy_dir(BUILT_IN, {})
    unpriced = [
        deployment.label
        for route in policy.models.values()
        for deployment in route.deployments
        if deployment.prices.source is not PriceSource.POLICY
    ]
    assert policy.models and not unpriced
