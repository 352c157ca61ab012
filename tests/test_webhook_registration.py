"""What a merchant can register as a webhook, against a real gateway: every URL that could reach inside the
network is refused at `POST`/`PATCH /v1/webhooks` with a 400 saying why (and nothing is contacted), a merchant
has at most EDGE_PROXY_WEBHOOKS_PER_MERCHANT webhooks, and a management body over its limit is refused without
being read whole."""
from __future__ import annotations

import select
import socket
from pathlib import Path

import httpx2 as httpx
import pytest

from .billing_helpers import h
from .gateway_process import GatewayProcess, base_env
from .webhook_receivers import ThreadedCanary


@pytest.fixture(scope="module")
def canary():
    c = ThreadedCanary()
    yield c
    c.stop()


def internal_urls(port: int) -> list[tuple[str, str]]:
    return [
        (f"http://127.0.0.1:{port}/", "must be https"),
        (f"https://127.0.0.1:{port}/", "loopback"),
        (f"https://2130706433:{port}/", "loopback"),
        (f"https://0177.0.0.1:{port}/", "loopback"),
        (f"https://0x7f000001:{port}/", "loopback"),
        (f"https://127.1:{port}/", "loopback"),
        (f"https://[::1]:{port}/", "loopback"),
        (f"https://[::ffff:127.0.0.1]:{port}/", "IPv4-mapped"),
        (f"https://[64:ff9b::7f00:1]:{port}/", "NAT64"),
        (f"https://localhost:{port}/", "always points inside"),
        (f"https://canary.localhost:{port}/", "always points inside"),
        ("https://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("https://[fd00:ec2::254]/", "cloud metadata"),
        ("https://10.0.0.1/", "private"),
        ("https://100.64.0.1/", "carrier-grade NAT"),
        ("https://[fc00::1]/", "unique-local"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://hooks.example.com:6379/", "port 6379"),
        ("https://user:pw@hooks.example.com/", "user name or password"),
        ("https://hooks.example.com/" + "x" * 2030, "over 2048 bytes"),
    ]


def test_every_url_that_could_reach_inside_the_network_is_refused_at_registration(gateway, canary):
    key = gateway.create_merchant("ssrf", "1")["secret_key"]
    existing = httpx.post(f"{gateway.url}/v1/webhooks", json={"name": "ok", "url": "https://hooks.example.com/x"},
                          headers=h(key), timeout=10)
    assert existing.status_code == 201, existing.text
    hook_id = existing.json()["webhook_id"]
    for url, reason in internal_urls(canary.port):
        created = httpx.post(f"{gateway.url}/v1/webhooks", json={"name": "evil", "url": url}, headers=h(key), timeout=10)
        assert created.status_code == 400 and reason in created.json()["error"]["message"], (url, created.text)
        patched = httpx.patch(f"{gateway.url}/v1/webhooks/{hook_id}", json={"url": url}, headers=h(key), timeout=10)
        assert patched.status_code == 400 and reason in patched.json()["error"]["message"], (url, patched.text)
    listed = httpx.get(f"{gateway.url}/v1/webhooks?limit=100", headers=h(key), timeout=10).json()["data"]
    assert [w["url"] for w in listed] == ["https://hooks.example.com/x"]
    assert canary.connections == 0


def test_a_merchant_may_have_at_most_the_configured_number_of_webhooks(fake, tmp_path):
    gw = GatewayProcess(base_env(tmp_path / "g.db", fake.url, {"EDGE_PROXY_WEBHOOKS_PER_MERCHANT": "3"})).start(tmp_path)
    try:
        made = []
        for i in range(3):
            r = httpx.post(f"{gw.url}/v1/webhooks", json={"name": f"h{i}", "url": f"https://h{i}.example.com/"},
                           headers=h(gw.secret_key), timeout=10)
            assert r.status_code == 201, r.text
            made.append(r.json()["webhook_id"])
        over = httpx.post(f"{gw.url}/v1/webhooks", json={"name": "h3", "url": "https://h3.example.com/"},
                          headers=h(gw.secret_key), timeout=10)
        assert over.status_code == 409 and "at most 3 webhooks" in over.json()["error"]["message"]
        other = gw.create_merchant("other", "1")["secret_key"]   # the cap is per merchant
        assert httpx.post(f"{gw.url}/v1/webhooks", json={"name": "x", "url": "https://x.example.com/"},
                          headers=h(other), timeout=10).status_code == 201
        assert httpx.delete(f"{gw.url}/v1/webhooks/{made[0]}", headers=h(gw.secret_key), timeout=10).status_code == 200
        again = httpx.post(f"{gw.url}/v1/webhooks", json={"name": "h3", "url": "https://h3.example.com/"},
                           headers=h(gw.secret_key), timeout=10)
        assert again.status_code == 201
    finally:
        gw.stop()


def test_plain_http_and_an_allow_listed_private_receiver_are_accepted_when_the_operator_says_so(fake, tmp_path):
    gw = GatewayProcess(base_env(tmp_path / "g.db", fake.url, {
        "EDGE_PROXY_WEBHOOK_ALLOW_HTTP": "1", "EDGE_PROXY_WEBHOOK_ALLOW": "127.0.0.1:9999, receiver.internal:7000",
    })).start(tmp_path)
    try:
        for url, status in [("http://hooks.example.com/", 201), ("http://127.0.0.1:9999/in", 201),
                            ("https://receiver.internal:7000/", 201), ("http://127.0.0.1:9998/in", 400),
                            ("http://localhost:9999/in", 400)]:
            r = httpx.post(f"{gw.url}/v1/webhooks", json={"name": "h", "url": url}, headers=h(gw.secret_key),
                           timeout=10)
            assert r.status_code == status, (url, r.text)
    finally:
        gw.stop()


# -- bounded management bodies ---------------------------------------------------------------------------------------
def worker_pids(gateway) -> list[int]:
    """The Granian worker processes under the gateway's main process (not their log writer processes)."""
    pids, todo = [], [gateway.proc.pid]
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = [int(c) for c in (task / "children").read_text().split()]
            pids += [c for c in children if b"writer_process" not in Path(f"/proc/{c}/cmdline").read_bytes()]
            todo += children
    return pids


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc")


def send_huge_body(gateway, key: str, total: int, declare_length: bool) -> tuple[int, int]:
    """POST `total` bytes to /v1/customers from a raw socket, stopping as soon as the gateway answers.
    Returns (status, bytes sent)."""
    framing = f"Content-Length: {total}" if declare_length else "Transfer-Encoding: chunked"
    head = (f"POST /v1/customers HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n\r\n").encode()
    block = b" " * (256 << 10)
    piece = block if declare_length else b"%x\r\n%s\r\n" % (len(block), block)
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
    sent, answer = 0, b""
    try:
        sock.sendall(head)
        sock.setblocking(False)
        pending = memoryview(piece)
        while sent < total:
            readable, writable, _ = select.select([sock], [sock], [], 30)
            if readable:
                break   # the answer came before the body was all sent
            if not writable:
                raise AssertionError("the gateway neither read the body nor answered within 30s")
            try:
                n = sock.send(pending)
            except (BrokenPipeError, ConnectionResetError):
                break
            pending = pending[n:]
            if not pending:
                pending = memoryview(piece)
                sent += len(block)
        sock.setblocking(True)
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    finally:
        sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, sent


@pytest.mark.parametrize("declare_length", [True, False], ids=["with Content-Length", "chunked"])
def test_a_150_mb_body_to_a_management_route_is_refused_without_the_worker_holding_it(gateway, declare_length):
    (worker,) = worker_pids(gateway)
    Path(f"/proc/{worker}/clear_refs").write_text("5")   # restart the peak-RSS count from now
    before = peak_rss_kib(worker)
    status, sent = send_huge_body(gateway, gateway.secret_key, 150 << 20, declare_length)
    growth_mib = (peak_rss_kib(worker) - before) / 1024
    assert status == 413
    assert growth_mib < 50, f"the worker's peak RSS grew by {growth_mib:.0f} MiB ({sent >> 20} MiB sent)"
    assert sent < 64 << 20, f"the gateway took {sent >> 20} MiB before answering"   # it stopped reading early
    r = httpx.post(f"{gateway.url}/v1/customers", json={"name": "after"}, headers=h(gateway.secret_key), timeout=10)
    assert r.status_code == 201   # the worker is fine
