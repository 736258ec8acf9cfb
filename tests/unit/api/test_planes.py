"""Which listener serves which path when the admin plane has its own port."""

from __future__ import annotations

import pytest

from gateway.api.planes import Plane, is_off_plane, listener_serves, plane_of_path

MAIN, ADMIN = 8080, 9090


@pytest.mark.parametrize(
    ("path", "plane"),
    [
        ("/admin", Plane.ADMIN),
        ("/admin/policy", Plane.ADMIN),
        ("/admin/clients/c-1", Plane.ADMIN),
        ("/finance", Plane.ADMIN),
        ("/finance/usage", Plane.ADMIN),
        ("/administrator", Plane.TEAMS),  # a prefix of a word is not the plane
        ("/financein", Plane.TEAMS),
        ("/v1/admin", Plane.TEAMS),
        ("/v1/chat/completions", Plane.TEAMS),
        ("/", Plane.TEAMS),
    ],
)
def test_plane_of_path(path, plane):
    """/admin and /finance and what is under them are the admin plane; nothing else."""
    assert plane_of_path(path) is plane


@pytest.mark.parametrize(
    ("path", "port", "served"),
    [
        ("/admin/policy", MAIN, False),
        ("/admin/policy", ADMIN, True),
        ("/finance/usage", MAIN, False),
        ("/finance/usage", ADMIN, True),
        ("/v1/chat/completions", MAIN, True),
        ("/v1/chat/completions", ADMIN, False),
        ("/oauth/token", ADMIN, False),
        ("/healthz", ADMIN, True),
        ("/readyz", ADMIN, True),
        ("/openapi.json", ADMIN, True),
        ("/metrics", ADMIN, True),
        ("/metrics", MAIN, False),  # every team's figures, no token: the operators' port only
        ("/healthz", MAIN, True),
        ("/admin/policy", None, False),  # a listener we cannot name is not the admin one
    ],
)
def test_listener_serves(path, port, served):
    """The teams' listener never serves the admin plane; the admin one serves only it and
    the operator's endpoints."""
    assert listener_serves(path, port, ADMIN) is served


def test_is_off_plane_reads_the_listening_port_not_a_header():
    """The port is the socket's (scope["server"]); a Host header naming the admin port
    does not move a request onto the admin plane."""
    scope = {
        "type": "http",
        "path": "/admin/policy",
        "server": ("127.0.0.1", MAIN),
        "headers": [(b"host", b"127.0.0.1:9090")],
    }
    assert is_off_plane(scope, ADMIN)
    assert not is_off_plane({**scope, "server": ("127.0.0.1", ADMIN)}, ADMIN)
