"""The client address a consent record and the per-address limit use: X-Forwarded-For
is believed only as far as the chain of trusted proxies goes."""

from __future__ import annotations

import ipaddress

import pytest
from starlette.testclient import TestClient

from app.consent import client_ip
from tests.support.visitor import form_fields

from .conftest import MakeClient

LOAD_BALANCER = "10.0.0.0/8"
TRUSTED = (ipaddress.ip_network(LOAD_BALANCER), ipaddress.ip_network("2001:db8:ffff::/48"))


@pytest.mark.parametrize(
    ("peer", "lines", "expected"),
    [
        # No header, or no proxy trusted: the connection's own address.
        ("10.1.2.3", [], "10.1.2.3"),
        ("198.51.100.7", ["203.0.113.9"], "198.51.100.7"),  # a client forging the header
        # Behind the load balancer: the hop it saw.
        ("10.1.2.3", ["203.0.113.9"], "203.0.113.9"),
        # Whatever the client wrote at the far end stays there: the first untrusted hop
        # from the right is the client.
        ("10.1.2.3", ["1.1.1.1, 203.0.113.9"], "203.0.113.9"),
        ("10.1.2.3", ["1.1.1.1, 203.0.113.9, 10.9.9.9"], "203.0.113.9"),
        # A proxy that appends its own line leaves the client's (forged) line first.
        ("10.1.2.3", ["1.1.1.1", "203.0.113.9"], "203.0.113.9"),
        ("10.1.2.3", ["1.1.1.1", "203.0.113.9, 10.9.9.9"], "203.0.113.9"),
        # Ports and brackets, as proxies write them.
        ("10.1.2.3", ["203.0.113.9:5678"], "203.0.113.9"),
        ("10.1.2.3", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("10.1.2.3", ["[2001:db8::1]"], "2001:db8::1"),
        ("10.1.2.3", ["2001:DB8:0::1"], "2001:db8::1"),
        ("10.1.2.3", ["203.0.113.9, [2001:db8:ffff::5]:8443"], "203.0.113.9"),
        # An IPv6 peer, and an IPv4 client seen through a dual-stack socket.
        ("2001:db8:ffff::1", ["203.0.113.9"], "203.0.113.9"),
        ("::ffff:198.51.100.7", [], "198.51.100.7"),
        ("::ffff:10.1.2.3", ["203.0.113.9"], "203.0.113.9"),
        # A broken chain: a hop that is no address. The last trusted hop reached is
        # all that is known; never the garbage, never what lies beyond it.
        ("10.1.2.3", ["203.0.113.9, unknown"], "10.1.2.3"),
        ("10.1.2.3", ["203.0.113.9, not-an-ip, 10.9.9.9"], "10.9.9.9"),
        ("10.1.2.3", ["203.0.113.9:port"], "10.1.2.3"),
        ("10.1.2.3", ["[2001:db8::1"], "10.1.2.3"),
        ("10.1.2.3", ["[2001:db8::1]x"], "10.1.2.3"),
        ("10.1.2.3", ["<script>"], "10.1.2.3"),
        # Empty items and empty lines are skipped, not taken for the client.
        ("10.1.2.3", ["203.0.113.9, , ", ""], "203.0.113.9"),
        # Every hop a trusted proxy: the farthest one.
        ("10.1.2.3", ["10.7.7.7, 10.8.8.8"], "10.7.7.7"),
        # No peer address (a Unix socket) or a name instead of one: kept as it is.
        (None, ["203.0.113.9"], None),
        ("testclient", ["203.0.113.9"], "testclient"),
    ],
)
def test_the_client_is_the_first_hop_from_the_right_that_is_not_a_trusted_proxy(
    peer: str | None, lines: list[str], expected: str | None
) -> None:
    assert client_ip(peer, lines, TRUSTED) == expected


def test_without_trusted_proxies_the_header_is_never_read() -> None:
    assert client_ip("10.1.2.3", ["203.0.113.9"], ()) == "10.1.2.3"
    assert client_ip("127.0.0.1", ["203.0.113.9"], ()) == "127.0.0.1"


def test_a_proxy_that_appends_its_own_line_is_read_to_its_end(make_client: MakeClient) -> None:
    client = make_client(trusted_proxies=LOAD_BALANCER, limit_per_ip="1/minute")
    proxied = TestClient(client.app, follow_redirects=False, client=("10.1.2.3", 40000))
    answers = []
    for n, person in enumerate(("198.51.100.1", "198.51.100.2")):
        fields = form_fields(proxied.get("/join").text, f"(201) 555-012{n}")
        # Both send the same made-up header; the load balancer adds a line with each
        # one's real address.
        headers = [("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", f"{person}:5{n}000")]
        answers.append(proxied.post("/JOIN", data=fields, headers=headers))
    # Two people, each within the per-address limit.
    assert [answer.status_code for answer in answers] == [303, 303]
