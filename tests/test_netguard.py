"""The network guard that notebook kernels run under (tests/netguard/sitecustomize.py) blocks what it must."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

from conftest import KERNEL_ENV, NET_GUARD_DIR

PROBE = textwrap.dedent("""
    import socket, sys
    results = []
    for host in ("api.mistral.ai", "192.0.2.1", "2001:db8::1"):
        try:
            socket.getaddrinfo(host, 443)
            results.append("lookup-allowed")
        except PermissionError:
            results.append("lookup-blocked")
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(("192.0.2.1", 443))  # TEST-NET-1: never routed, but the guard must refuse before trying
        results.append("connect-allowed")
    except PermissionError:
        results.append("connect-blocked")
    except OSError:
        results.append("connect-allowed")
    s.close()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    c = socket.create_connection(server.getsockname(), timeout=2)  # loopback still works
    results.append("loopback-ok")
    c.close(); server.close()
    socket.getaddrinfo("localhost", 80)
    results.append("localhost-ok")
    print(" ".join(results))
""")


def test_guard_blocks_non_loopback_and_logs_it(tmp_path):
    log = tmp_path / "guard.log"
    env = {**os.environ, **KERNEL_ENV, "COURSE_NET_GUARD_LOG": str(log)}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["lookup-blocked"] * 3 + ["connect-blocked", "loopback-ok", "localhost-ok"]
    logged = log.read_text()
    assert "api.mistral.ai" in logged and "192.0.2.1" in logged  # even a caught attempt leaves a trace


def test_guard_is_off_without_its_switch(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(NET_GUARD_DIR), "COURSE_NET_GUARD": "0"}
    code = "import socket; print(socket.getaddrinfo.__module__)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == socket.getaddrinfo.__module__ == "socket"
