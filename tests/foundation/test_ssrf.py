"""Client-given URLs are hostile: non-public targets are refused, after DNS and on every redirect."""

from __future__ import annotations

import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared import ssrf
from shared.errors import ImageTooLarge


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        # Recorded before answering: the client may read the answer (and the test assert) before a later line runs.
        self.server.hosts.append(self.headers.get("Host"))
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


# The policy, address by address: (address, allowed by the default policy). IPv6 forms that carry an IPv4 address
# are judged by that address; the Teredo client is the bitwise NOT of the last 32 bits.
ADDRESSES = [
    ("8.8.8.8", True),
    ("93.184.216.34", True),
    ("2606:4700:4700::1111", True),
    ("::ffff:8.8.8.8", True),
    ("::8.8.8.8", True),
    ("64:ff9b::8.8.8.8", True),
    ("2002:808:808::1", True),
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", True),  # Teredo, client 8.8.8.8
    ("127.0.0.1", False),
    ("10.0.0.1", False),
    ("172.16.5.4", False),
    ("192.168.1.1", False),
    ("169.254.169.254", False),
    ("0.0.0.0", False),
    ("100.64.0.1", False),
    ("192.0.2.1", False),
    ("224.0.0.1", False),
    ("240.0.0.1", False),
    ("255.255.255.255", False),
    ("::1", False),
    ("::", False),
    ("fe80::1", False),
    ("fc00::1", False),
    ("fd00::1", False),
    ("fd00:ec2::254", False),  # the AWS metadata service over IPv6
    ("fec0::1", False),
    ("fefe::1", False),
    ("ff02::1", False),
    ("2001:db8::1", False),
    ("::ffff:127.0.0.1", False),
    ("::ffff:10.0.0.1", False),
    ("::ffff:169.254.169.254", False),
    ("::ffff:0.0.0.0", False),
    ("::127.0.0.1", False),
    ("::10.0.0.1", False),
    ("::169.254.169.254", False),
    ("::240.0.0.1", False),
    ("64:ff9b::127.0.0.1", False),
    ("64:ff9b::10.0.0.1", False),
    ("64:ff9b::169.254.169.254", False),
    ("64:ff9b::0.0.0.0", False),
    ("64:ff9b:1::127.0.0.1", False),
    ("64:ff9b:1::8.8.8.8", False),  # local-use NAT64: the prefix length, hence the IPv4 host, can't be read
    ("64:ff9b:1:a00:1::808:808", False),  # the same, as a /48 translator would put 10.0.0.1
    ("2002:7f00:1::1", False),
    ("2002:a00:1::", False),
    ("2002:a9fe:a9fe::1", False),
    ("2002::1", False),
    ("2002:f000:1::1", False),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),  # Teredo, client 127.0.0.1
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", False),  # Teredo, client 10.0.0.1
    ("2001:0:4136:e378:8000:63bf:5601:5601", False),  # Teredo, client 169.254.169.254
    ("2001:0:4136:e378:8000:63bf:ffff:ffff", False),  # Teredo, client 0.0.0.0
]


@pytest.mark.parametrize(("address", "allowed"), ADDRESSES)
def test_address_policy(address, allowed):
    assert ssrf.UrlPolicy().address_allowed(ipaddress.ip_address(address)) is allowed


@pytest.mark.parametrize(("address", "inner"), [
    ("::ffff:127.0.0.1", "127.0.0.1"),
    ("::10.0.0.1", "10.0.0.1"),
    ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
    ("2002:7f00:1::1", "127.0.0.1"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1"),
    ("2001:0:4136:e378:8000:63bf:5601:5601", "169.254.169.254"),
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", "8.8.8.8"),
    ("2606:4700:4700::1111", None),
    ("fd00::1", None),
    ("8.8.8.8", None),
])
def test_embedded_ipv4_is_unwrapped(address, inner):
    found = ssrf.embedded_ipv4(ipaddress.ip_address(address))
    assert (str(found) if found else None) == inner


# The full check on literal hosts (no DNS): the address it settles on, or None where it refuses with UNSAFE_URL.
# getaddrinfo takes the inet_aton spellings (decimal, octal, hex, short dotted) as addresses, so the check must too.
LITERAL_URLS = [
    ("http://134744072/", "8.8.8.8"),
    ("http://0x8.0x8.0x8.0x8/", "8.8.8.8"),
    ("http://010.010.010.010/", "8.8.8.8"),
    ("http://8.526344/", "8.8.8.8"),
    ("http://[::ffff:8.8.8.8]/", "::ffff:808:808"),
    ("http://[64:ff9b::808:808]/", "64:ff9b::808:808"),
    ("http://[2002:808:808::1]/", "2002:808:808::1"),
    ("https://[2001:0:4136:e378:8000:63bf:f7f7:f7f7]:8443/", "2001:0:4136:e378:8000:63bf:f7f7:f7f7"),
    ("https://[2606:4700:4700::1111]/", "2606:4700:4700::1111"),
    ("http://2130706433/", None),
    ("http://0x7f.1/", None),
    ("http://017700000001/", None),
    ("http://0x7f000001/", None),
    ("http://0X7F.0.0.1/", None),
    ("http://0177.0.0.1/", None),
    ("http://127.1/", None),
    ("http://0/", None),
    ("http://2852039166/latest/meta-data/", None),
    ("http://0xa9.0xfe.0xa9.0xfe/", None),
    ("http://0251.0376.0251.0376/", None),
    ("http://169.254.43518/", None),
    ("http://[::ffff:127.0.0.1]/", None),
    ("http://[::ffff:7f00:1]/", None),
    ("http://[::127.0.0.1]/", None),
    ("http://[::a9fe:a9fe]/", None),
    ("http://[64:ff9b::a9fe:a9fe]/", None),
    ("http://[64:ff9b::127.0.0.1]/", None),
    ("http://[64:ff9b:1::808:808]/", None),
    ("http://[2002:7f00:1::]/", None),
    ("http://[2002:a9fe:a9fe::]/", None),
    ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", None),
    ("http://[2001:0:4136:e378:8000:63bf:5601:5601]/", None),
    ("http://[fec0::1]/", None),
    ("http://[fc00::1]/", None),
    ("http://[fd00:ec2::254]/", None),
    ("http://[fe80::1%25eth0]/", None),
    ("http://[2606:4700:4700::1111%25eth0]/", None),
]


@pytest.mark.parametrize(("url", "address"), LITERAL_URLS)
async def test_literal_hosts_through_the_full_check(url, address):
    if address is None:
        with pytest.raises(ssrf.UnsafeUrl) as error:
            await ssrf.resolve_checked(url, ssrf.UrlPolicy(), "image_url")
        assert error.value.http_status == 400 and error.value.metadata["field"] == "image_url"
    else:
        assert [str(a) for a in await ssrf.resolve_checked(url, ssrf.UrlPolicy(), "image_url")] == [address]


async def test_allow_list_admits_wrapped_forms_of_a_listed_network():
    policy = ssrf.UrlPolicy.from_setting("10.1.0.0/16")
    assert [str(a) for a in await ssrf.resolve_checked("http://[::ffff:10.1.2.3]/", policy)] == ["::ffff:a01:203"]
    assert [str(a) for a in await ssrf.resolve_checked("http://0xa010203/", policy)] == ["10.1.2.3"]
    with pytest.raises(ssrf.UnsafeUrl):
        await ssrf.resolve_checked("http://[::ffff:10.2.0.1]/", policy)


LONG_NAME = ("a" * 60 + ".") * 5 + "com"  # 308 characters, every label legal
BAD_HOSTS = [
    "a" * 64 + ".example.com",
    "a..b",
    ".example.com",
    LONG_NAME,
    "\udcff.example.com",
    "ex\u00e4mple..com",
    "a b.example.com",
    "a\x00b.example.com",
    "%31%32%37.0.0.1",
    "1.2.3.256",
    "1.2.3.4.5",
    "0x100000000",
    "example.123",
]


@pytest.mark.parametrize("field", ["image_url", "webhook_url"])
@pytest.mark.parametrize("host", BAD_HOSTS)
async def test_hosts_the_idna_codec_or_inet_aton_refuse_are_a_400_naming_the_field(host, field):
    with pytest.raises(ssrf.UnsafeUrl) as error:
        await ssrf.resolve_checked(f"https://{host}/x.png", ssrf.UrlPolicy(), field)
    exc = error.value
    assert exc.http_status == 400 and exc.reason == "UNSAFE_URL" and exc.metadata["field"] == field
    assert exc.message.startswith(field)
    for shown in (exc.message, *exc.metadata.values()):
        assert shown.isascii() and shown.isprintable() and len(shown) < 120
        assert LONG_NAME not in shown


async def test_a_bad_host_is_refused_by_fetch_and_post_too():
    with pytest.raises(ssrf.UnsafeUrl):
        await ssrf.fetch("http://a..b/", ssrf.UrlPolicy())
    with pytest.raises(ssrf.UnsafeUrl):
        await ssrf.post("http://" + "a" * 64 + ".example/", b"{}", {}, ssrf.UrlPolicy())


@pytest.fixture
def fake_dns(monkeypatch):
    """socket.getaddrinfo answering `answers[name]` in turn (the last one repeating) and counting the questions;
    other hosts (the literals the client connects to) go to the real function."""
    real = socket.getaddrinfo
    fake = {"answers": {}, "asked": []}

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in fake["answers"]:
            return real(host, port, *args, **kwargs)
        fake["asked"].append(name)
        queue = fake["answers"][name]
        address = queue.pop(0) if len(queue) > 1 else queue[0]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return fake


async def test_a_253_character_name_is_asked_of_dns_and_a_254_character_one_is_not(fake_dns):
    name_253 = ("a" * 62 + ".") * 4 + "a"
    assert len(name_253) == 253
    fake_dns["answers"][name_253] = ["8.8.8.8"]
    assert [str(a) for a in await ssrf.resolve_checked(f"http://{name_253}/", ssrf.UrlPolicy())] == ["8.8.8.8"]
    with pytest.raises(ssrf.UnsafeUrl):
        await ssrf.resolve_checked(f"http://{name_253}a/", ssrf.UrlPolicy())
    assert fake_dns["asked"] == [name_253]


async def test_unicode_names_are_asked_of_dns_in_their_idna_form(fake_dns):
    fake_dns["answers"]["xn--exmple-cua.com"] = ["93.184.216.34"]
    assert [str(a) for a in await ssrf.resolve_checked("http://ex\u00e4mple.com/", ssrf.UrlPolicy())] == [
        "93.184.216.34"]


async def test_a_name_resolving_to_a_wrapped_private_address_is_refused(fake_dns):
    fake_dns["answers"]["nat64.example"] = ["64:ff9b::a9fe:a9fe"]
    with pytest.raises(ssrf.UnsafeUrl):
        await ssrf.resolve_checked("http://nat64.example/", ssrf.UrlPolicy())


async def test_the_connection_goes_to_the_checked_address_not_a_second_dns_answer(local_server, fake_dns):
    # First answer: the allow-listed loopback server. Any later answer: the metadata address. The request must
    # reach the server, having asked DNS once: the client connects to the checked address, not the name.
    port = local_server.server_port
    fake_dns["answers"]["rebind.example"] = ["127.0.0.1", "169.254.169.254"]
    result = await ssrf.fetch(f"http://rebind.example:{port}/ok", ssrf.UrlPolicy.from_setting("127.0.0.1/32"))
    assert result.status_code == 200 and result.content == b"x" * 16
    assert fake_dns["asked"] == ["rebind.example"]
    assert local_server.hosts[-1] == f"rebind.example:{port}"
