"""A second host on this machine: a Linux network namespace joined by a veth pair, whose link
a test can cut and heal (a network partition between a worker and its database).

The namespace gets ``10.201.N.2`` and this machine's end of the pair ``10.201.N.1`` (a /30, N
random); a process started with `NetNamespace.prefix` reaches this machine only through the
pair, e.g. a database listening on ``host_address``. `NetNamespace.cut` sets this machine's end
down: from then on every packet between the two is dropped without a word, as in a real
partition (TCP retransmits into the void; new connects time out), until `NetNamespace.heal`.
Needs root and iproute2's ``ip``; everything is removed at the end of the ``with`` block.
"""

from __future__ import annotations

import random
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

#: Longest wait for one ``ip`` command.
IP_TIMEOUT_S = 10


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=IP_TIMEOUT_S)


class NetNamespace:
    """One namespace and its veth pair (module docstring)."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.name = f"mtl{tag}"
        self.host_if, self.inner_if = f"mtlh{tag}", f"mtln{tag}"
        subnet = random.randrange(1, 250)
        self.host_address = f"10.201.{subnet}.1"
        self.inner_address = f"10.201.{subnet}.2"

    @property
    def prefix(self) -> list[str]:
        """The command prefix that runs a program inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def create(self) -> None:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.inner_if)
        _ip("link", "set", self.inner_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_address}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        inside = ["netns", "exec", self.name, "ip"]
        _ip(*inside, "addr", "add", f"{self.inner_address}/30", "dev", self.inner_if)
        _ip(*inside, "link", "set", self.inner_if, "up")
        _ip(*inside, "link", "set", "lo", "up")

    def cut(self) -> None:
        """Drop every packet between the namespace and this machine from now on."""
        _ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        _ip("link", "set", self.host_if, "up")

    def destroy(self) -> None:
        # Deleting the namespace deletes its end of the pair, and with it this machine's end.
        for command in (["netns", "del", self.name], ["link", "del", self.host_if]):
            subprocess.run(["ip", *command], capture_output=True, timeout=IP_TIMEOUT_S)


@contextmanager
def network_namespace() -> Iterator[NetNamespace]:
    """A fresh `NetNamespace`, removed afterwards whatever happened."""
    namespace = NetNamespace()
    try:
        namespace.create()
        yield namespace
    finally:
        namespace.destroy()


__all__ = ["NetNamespace", "network_namespace"]
