"""Client-given URLs are hostile: non-public targets are refused, after DNS and on every redirect."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared import ssrf
from shared.errors import ImageTooLarge


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/redirect-to/"):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/redirect-to/"))
            self.end_headers()
            return
        body = b"x" * (2048 if self.path == "/big" else 16)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.hosts.append(self.headers.get("Host"))


@pytest.fixture(scope="module")
def local_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.hosts = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


REFUSED = [
    "http://127.0.0.1/",
    "http://[::1]/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0/",
    "http://100.64.0.1/",
    "http://localhost/",
]


@pytest.mark.parametrize("url", REFUSED)
async def test_non_public_targets_are_refused(url):
    with pytest.raises(ssrf.UnsafeUrl) as error:
        await ssrf.fetch(url, ssrf.UrlPolicy())
    assert error.value.reason == "UNSAFE_URL" and error.value.http_status == 400


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "not a url", "http:///nohost"])
async def test_bad_schemes_and_shapes_are_refused(url):
    with pytest.raises(ssrf.UnsafeUrl):
        await ssrf.fetch(url, ssrf.UrlPolicy())


async def test_public_literal_address_passes_the_check():
    assert [str(a) for a in await ssrf.resolve_checked("https://93.184.216.34/img.png", ssrf.UrlPolicy())] == [
        "93.184.216.34"]


async def test_allow_list_admits_a_network_and_the_request_keeps_its_host_header(local_server):
    port = local_server.server_port
    policy = ssrf.UrlPolicy.from_setting("127.0.0.1/32")
    result = await ssrf.fetch(f"http://127.0.0.1:{port}/ok", policy)
    assert result.status_code == 200 and result.content == b"x" * 16
    assert local_server.hosts[-1] == f"127.0.0.1:{port}"


async def test_redirect_to_loopback_is_refused(local_server):
    port = local_server.server_port
    policy = ssrf.UrlPolicy.from_setting("127.0.0.1/32")
    # Allowed first hop, then a redirect to another loopback address that is not on the allow-list.
    with pytest.raises(ssrf.UnsafeUrl):
        await ssrf.fetch(f"http://127.0.0.1:{port}/redirect-to/http://127.0.0.2:{port}/ok", policy)
    with pytest.raises(ssrf.UnsafeUrl):
        await ssrf.fetch(f"http://127.0.0.1:{port}/redirect-to/http://169.254.169.254/", policy)


async def test_host_resolving_to_loopback_is_refused_even_with_a_port(local_server):
    with pytest.raises(ssrf.UnsafeUrl):
        await ssrf.fetch(f"http://localhost:{local_server.server_port}/ok", ssrf.UrlPolicy())


async def test_size_limit(local_server):
    policy = ssrf.UrlPolicy.from_setting("127.0.0.1/32")
    with pytest.raises(ImageTooLarge):
        await ssrf.fetch(f"http://127.0.0.1:{local_server.server_port}/big", policy, max_bytes=1024)


async def test_unreachable_is_a_clear_fetch_error():
    policy = ssrf.UrlPolicy.from_setting("127.0.0.1/32")
    with pytest.raises(ssrf.UrlFetchFailed):
        await ssrf.fetch("http://127.0.0.1:1/nothing-listens", policy, timeout_s=2)
