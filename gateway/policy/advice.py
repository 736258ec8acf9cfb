"""What `policy check` points out in a valid bundle: things it allows that an author
probably did not mean. Warnings, never errors. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.policy.compiled import Policy
from gateway.usage.pricing import PriceSource


def policy_warnings(policy: Policy) -> list[str]:
    """Every warning about `policy`: what `policy check` prints, and what `diff`, `apply`,
    `rollback` and the admin API's changes report (CLI: stderr; API: `warnings`)."""
    return unpriced_under_usd_budgets(policy)


def unpriced_under_usd_budgets(policy: Policy) -> list[str]:
    """Deployments with no known price that a team with a USD budget may use: their
    spend counts as $0 against it, so that budget does not limit them."""
    found = []
    for team in policy.teams.values():
        if not any(budget.usd is not None for budget in team.budgets):
            continue
        for alias in policy.visible_models(team):
            for deployment in policy.models[alias].deployments:
                if deployment.prices.source is PriceSource.UNKNOWN:
                    found.append(
                        f"team {team.name!r} has a USD budget, but model {alias!r} "
                        f"(deployment {deployment.label}) has no known price: its spend "
                        "counts as $0 against that budget. Set `price:` on the model."
                    )
    return found


def misplaced_clients(listed: Mapping[str, str], registered: Mapping[str, str]) -> list[str]:
    """Each of the gateway's own clients a team lists (`listed`: client id to the team
    listing it) that was created for another team (`registered`: id to its team). Its
    tokens carry the team it was created for, which bills them and says which models
    they may use; the listing changes nothing, silently, unless warned of."""
    return [
        f"teams.{team}.clients lists {client_id!r}, a client of this gateway created for "
        f"team {registered[client_id]!r}: its tokens are billed to {registered[client_id]!r} "
        f"and use its models; create a client with --team {team} instead"
        for client_id, team in sorted(listed.items())
        if client_id in registered and registered[client_id] != team
    ]
