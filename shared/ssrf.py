"""Outbound HTTP to URLs a client gave us (image_url, webhook_url), treated as hostile.

Only http(s) to globally routable addresses: loopback, private, link-local (169.254.0.0/16, where cloud
metadata lives), unique-local, site-local, CGNAT, multicast and reserved ranges are refused. IPv6 forms that
carry an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo) are judged by the IPv4 address they reach, and
the numeric IPv4 spellings getaddrinfo accepts (2130706433, 0x7f.1, 017700000001) are read as the address they
are. The check runs on every address the name resolves to, the connection is pinned to the checked address (so
a second DNS answer cannot rebind it), and every redirect hop is checked again. Deployments that must reach an
internal host list it in an allow-list (networks or host names). Host names the IDNA codec refuses are a 400
naming the field, and what the client sent is echoed only in a clipped, printable form.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx

from shared.errors import ImageTooLarge, InvalidArgument

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
REDIRECTS = {301, 302, 303, 307, 308}


class UnsafeUrl(InvalidArgument):
    reason = "UNSAFE_URL"


class UrlFetchFailed(InvalidArgument):
    reason = "URL_FETCH_FAILED"


@dataclass(frozen=True)
class UrlPolicy:
    """What outbound URLs may reach. Empty allow-lists = public addresses only."""

    allowed_networks: tuple[Network, ...] = ()
    allowed_hosts: frozenset[str] = frozenset()
    schemes: frozenset[str] = field(default=frozenset({"http", "https"}))
    max_redirects: int = 5

    @classmethod
    def from_setting(cls, allow_list: str = "") -> UrlPolicy:
        """Parse a comma list of CIDRs/addresses and host names, e.g. "10.1.0.0/16,hooks.internal"."""
        networks, hosts = [], set()
        for item in (part.strip() for part in allow_list.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    def address_allowed(self, address: Address) -> bool:
        if any(address in network for network in self.allowed_networks):
            return True
        if address.version == 6 and address in _NAT64_LOCAL:
            return False
        inner = embedded_ipv4(address)
        if inner is not None:
            # Judged by the IPv4 host the packets reach, so an allow-listed IPv4 network admits its wrapped forms too.
            return self.address_allowed(inner)
        return is_public(address)


# RFC 8215 local-use NAT64: the translator's prefix length is a local choice, so where the IPv4 bits sit (and
# which host is reached) can't be read from the address; refused as a whole.
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
# Spelled out because ipaddress's is_global on IPv6 misses some of these on older Pythons (fec0::/10 on 3.11).
_NOT_PUBLIC_V6 = tuple(ipaddress.IPv6Network(n) for n in ("fc00::/7", "fec0::/10", "fe80::/10", "ff00::/8"))


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address delivers to (mapped, compatible, NAT64 /96, 6to4, Teredo client), if any."""
    if address.version == 4:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64 or address in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def is_public(address: Address) -> bool:
    """Globally routable unicast; no allow-list, no unwrapping (see UrlPolicy.address_allowed)."""
    if address.version == 6 and any(address in network for network in _NOT_PUBLIC_V6):
        return False
    # is_global is False for loopback, private, link-local, unique-local, CGNAT, unspecified; the rest is explicit
    # so that a Python whose tables differ can't widen the policy.
    return (address.is_global and not address.is_multicast and not address.is_reserved
            and not address.is_unspecified and not address.is_loopback and not address.is_link_local)


_NUMERIC_PART = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_SHOWN_CHARS = 48


def _shown(text: str) -> str:
    """A client-given string as it may appear in messages and metadata: printable ASCII, clipped."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in text[:_SHOWN_CHARS])
    return clean + ("..." if len(text) > _SHOWN_CHARS else "")


def numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address of an inet_aton spelling (1-4 dotted parts, each decimal, 0-octal or 0x-hex, the last filling
    the remaining bytes), which getaddrinfo takes as an address without DNS; None when `host` isn't one.

    ValueError when the last label is a number but the whole is no address: no DNS name ends in a number (WHATWG
    URL refuses these too), and resolvers disagree about what such a host means."""
    parts = host.split(".")
    if not _NUMERIC_PART.fullmatch(parts[-1]):
        return None
    if len(parts) > 4 or not all(_NUMERIC_PART.fullmatch(part) for part in parts):
        raise ValueError("not an IPv4 address")
    values = [int(part, 16) if part[:2] in ("0x", "0X") else int(part, 8) if part.startswith("0") else int(part)
              for part in parts]
    last_bits = 8 * (5 - len(values))
    if any(value > 255 for value in values[:-1]) or values[-1] >= 1 << last_bits:
        raise ValueError("IPv4 part out of range")
    number = values[-1]
    for index, value in enumerate(values[:-1]):
        number |= value << (24 - 8 * index)
    return ipaddress.IPv4Address(number)


def _host_name(host: str, field_name: str) -> str:
    """`host` as the ASCII name getaddrinfo will be asked for; UnsafeUrl when it cannot be one."""
    try:
        name = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        # The codec getaddrinfo would use refuses it: a label over 63 characters, an empty label, bad code points.
        name = ""
    if not name or len(name) > 253 or not _HOST_NAME.fullmatch(name):
        raise UnsafeUrl(f"{field_name} host {_shown(host)!r} is not a valid host name", field=field_name,
                        host=_shown(host))
    return name


def _parse(url: str, policy: UrlPolicy, field_name: str) -> tuple[str, str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrl(f"{field_name} is not a valid URL", field=field_name) from None
    if parts.scheme not in policy.schemes:
        raise UnsafeUrl(f"{field_name} must use http or https", field=field_name, received=_shown(parts.scheme))
    if not parts.hostname:
        raise UnsafeUrl(f"{field_name} has no host", field=field_name)
    return parts.scheme, parts.hostname.lower().rstrip("."), port or (443 if parts.scheme == "https" else 80)


def _literal(host: str, field_name: str) -> Address | None:
    """The address `host` spells without DNS (IPv6, dotted or numeric IPv4), or None for a name."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        if getattr(address, "scope_id", None):
            raise UnsafeUrl(f"{field_name} host has an IPv6 zone id", field=field_name, host=_shown(host))
        return address
    try:
        return numeric_ipv4(host)
    except ValueError:
        raise UnsafeUrl(f"{field_name} host {_shown(host)!r} is not a valid address", field=field_name,
                        host=_shown(host)) from None


async def resolve_checked(url: str, policy: UrlPolicy, field_name: str = "url") -> list[Address]:
    """The addresses `url` may be fetched from; UnsafeUrl when any resolved address is not allowed."""
    _scheme, host, port = _parse(url, policy, field_name)
    literal = _literal(host, field_name)
    if literal is not None:
        addresses: list[Address] = [literal]
    else:
        name = _host_name(host, field_name)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            raise UrlFetchFailed(f"{field_name} host {_shown(name)!r} does not resolve", field=field_name) from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
        if host in policy.allowed_hosts or name in policy.allowed_hosts:
            return addresses
    refused = [str(a) for a in addresses if not policy.address_allowed(a)]
    if refused:
        raise UnsafeUrl(
            f"{field_name} points at a non-public address ({', '.join(refused[:4])}); refused",
            field=field_name, host=_shown(host),
        )
    return addresses


@dataclass
class FetchResult:
    status_code: int
    content: bytes
    content_type: str
    final_url: str
    headers: dict[str, str]


async def request(method: str, url: str, policy: UrlPolicy, *, content: bytes | None = None,
                  headers: dict[str, str] | None = None, timeout_s: float = 10.0, max_bytes: int = 50 * 1024 * 1024,
                  field_name: str = "url") -> FetchResult:
    """One HTTP exchange following redirects, each hop checked and pinned to a checked address."""
    current = url
    async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
        for _hop in range(policy.max_redirects + 1):
            addresses = await resolve_checked(current, policy, field_name)
            response = await _send_pinned(client, method, current, addresses[0], content, headers or {},
                                          max_bytes, field_name)
            if response.status_code in REDIRECTS and "location" in response.headers:
                current = urljoin(current, response.headers["location"])
                if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                    method, content = "GET", None
                continue
            return response
    raise UrlFetchFailed(f"{field_name} redirected more than {policy.max_redirects} times", field=field_name)


async def _send_pinned(client: httpx.AsyncClient, method: str, url: str, address: Address, content: bytes | None,
                       headers: dict[str, str], max_bytes: int, field_name: str) -> FetchResult:
    parts = urlsplit(url)
    host_literal = f"[{address}]" if address.version == 6 else str(address)
    port = parts.port
    pinned = parts._replace(netloc=f"{host_literal}:{port}" if port else host_literal).geturl()
    host_header = parts.netloc.rsplit("@", 1)[-1]
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    req = client.build_request(method, pinned, content=content, headers={**headers, "Host": host_header},
                               extensions=extensions)
    try:
        response = await client.send(req, stream=True)
    except httpx.TimeoutException:
        raise UrlFetchFailed(f"{field_name} timed out", field=field_name) from None
    except httpx.HTTPError as exc:
        raise UrlFetchFailed(f"{field_name} could not be fetched: {type(exc).__name__}", field=field_name) from None
    try:
        declared = int(response.headers.get("content-length", "0") or 0)
        if declared > max_bytes:
            raise ImageTooLarge(f"{field_name} body is {declared} bytes; the limit is {max_bytes}", field=field_name,
                                max_bytes=max_bytes)
        body = bytearray()
        try:
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise ImageTooLarge(f"{field_name} body exceeds the limit of {max_bytes} bytes", field=field_name,
                                        max_bytes=max_bytes)
        except httpx.TimeoutException:
            raise UrlFetchFailed(f"{field_name} timed out", field=field_name) from None
        except httpx.HTTPError as exc:
            raise UrlFetchFailed(f"{field_name} transfer failed: {type(exc).__name__}", field=field_name) from None
        return FetchResult(response.status_code, bytes(body), response.headers.get("content-type", ""), url,
                           dict(response.headers))
    finally:
        await response.aclose()


async def fetch(url: str, policy: UrlPolicy, *, timeout_s: float = 10.0, max_bytes: int = 50 * 1024 * 1024,
                field_name: str = "image_url") -> FetchResult:
    """GET `url` safely; a non-2xx answer is URL_FETCH_FAILED."""
    result = await request("GET", url, policy, timeout_s=timeout_s, max_bytes=max_bytes, field_name=field_name)
    if not 200 <= result.status_code < 300:
        raise UrlFetchFailed(f"{field_name} answered HTTP {result.status_code}", field=field_name,
                             status=result.status_code)
    return result


async def post(url: str, body: bytes, headers: dict[str, str], policy: UrlPolicy, *, timeout_s: float = 10.0,
               field_name: str = "webhook_url") -> FetchResult:
    """POST `body` safely (webhooks); the caller decides what a status code means."""
    return await request("POST", url, policy, content=body, headers=headers, timeout_s=timeout_s,
                         max_bytes=1024 * 1024, field_name=field_name)
