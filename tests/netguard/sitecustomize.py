"""Network guard for notebook kernels under test: only loopback may be reached.

Python imports ``sitecustomize`` at start-up from ``sys.path``; tests/conftest.py puts this folder on
``PYTHONPATH`` and sets ``COURSE_NET_GUARD=1``, so every kernel nbval and papermill start inherits it.
Any name lookup or connection to a non-loopback address then raises ``PermissionError`` *and* is appended
to the file named by ``COURSE_NET_GUARD_LOG``, so a notebook that swallows the error still fails the run
(conftest checks that file when the session ends).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import traceback

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def is_local(host: object) -> bool:
    """True for loopback/unspecified addresses and loopback names; everything else counts as the network."""
    if host is None:
        return True  # getaddrinfo(None, port): the local wildcard, used to bind
    if isinstance(host, bytes):
        host = host.decode("idna", "replace")
    text = str(host).strip("[]").split("%")[0].lower()
    if text in LOOPBACK_NAMES or text == "":
        return True
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False  # a host name other than localhost
    return ip.is_loopback or ip.is_unspecified


def _blocked(what: str, host: object) -> PermissionError:
    message = f"network guard: {what} {host!r} is not loopback (BACKEND=local must not leave the machine)"
    log = os.environ.get("COURSE_NET_GUARD_LOG")
    if log:
        stack = "".join(traceback.format_stack(limit=12))
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{message}\n{stack}\n")
    return PermissionError(message)


def install() -> None:
    """Patch socket name lookup and connect so only loopback works in this process."""
    real_getaddrinfo, real_connect, real_connect_ex = socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex
    real_create_connection = socket.create_connection

    def getaddrinfo(host, *args, **kwargs):
        if not is_local(host):
            raise _blocked("name lookup of", host)
        return real_getaddrinfo(host, *args, **kwargs)

    def _check(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_local(address[0]):
            raise _blocked("connection to", address[0])

    def connect(self, address):
        _check(self, address)
        return real_connect(self, address)

    def connect_ex(self, address):
        _check(self, address)
        return real_connect_ex(self, address)

    def create_connection(address, *args, **kwargs):
        if not is_local(address[0]):
            raise _blocked("connection to", address[0])
        return real_create_connection(address, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.create_connection = create_connection
    real_gethostbyname = socket.gethostbyname

    def gethostbyname(host):
        if not is_local(host):
            raise _blocked("name lookup of", host)
        return real_gethostbyname(host)

    socket.gethostbyname = gethostbyname


if os.environ.get("COURSE_NET_GUARD") == "1":
    install()
