"""Loopback ports for servers the harness starts."""

from __future__ import annotations

import random
import socket
from pathlib import Path

HOST = "127.0.0.1"
# Where the kernel takes ephemeral ports from (client sockets, and port-0 binds such as vLLM's
# own `get_open_port` for its distributed init). Linux's default, if the file is not there.
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL_LOW = 32768
LOWEST = 10_000


def ephemeral_low() -> int:
    try:
        return int(EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return DEFAULT_EPHEMERAL_LOW


def bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A loopback port free now, below the ephemeral range.

    A server binds its port only after loading its engines (a minute on CPU). A port from the
    ephemeral range (what binding port 0 returns) can be taken meanwhile by any client socket
    or by the engines' own port-0 binds; seen once: `address already in use`, exit 3. Below
    that range only explicit binds compete.
    """
    high = ephemeral_low()
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(LOWEST, max(LOWEST + 1, high))
        if bindable(port):
            return port
    raise RuntimeError(f"no free loopback port in [{LOWEST}, {high})")


def loopback_url(port: int) -> str:
    return f"http://{HOST}:{port}"
