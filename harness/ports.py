"""Loopback ports for servers the harness starts."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def free_port() -> int:
    """A port free on loopback now (the OS picks it; a server binds it moments later)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def loopback_url(port: int) -> str:
    return f"http://{HOST}:{port}"
