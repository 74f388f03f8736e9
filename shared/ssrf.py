"""Outbound HTTP to URLs a client gave us (image_url, webhook_url), treated as hostile.

Only http(s) to globally routable addresses: loopback, private, link-local (169.254.0.0/16, where cloud
metadata lives), unique-local, CGNAT, multicast and reserved ranges are refused, IPv4-mapped IPv6 included.
The check runs on every address the name resolves to, the connection is pinned to the checked address (so a
second DNS answer cannot rebind it), and every redirect hop is checked again. Deployments that must reach an
internal host list it in an allow-list (networks or host names).
"""

from __future__ import annotations

import asyncio
import ipaddress
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
    def from_setting(cls, allow_list: str = "") -> "UrlPolicy":
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
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            return self.address_allowed(mapped)
        # is_global is False for loopback, private, link-local, unique-local, CGNAT, reserved, unspecified.
        return address.is_global and not address.is_multicast


def _parse(url: str, policy: UrlPolicy, field_name: str) -> tuple[str, str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrl(f"{field_name} is not a valid URL", field=field_name) from None
    if parts.scheme not in policy.schemes:
        raise UnsafeUrl(f"{field_name} must use http or https", field=field_name, received=parts.scheme)
    if not parts.hostname:
        raise UnsafeUrl(f"{field_name} has no host", field=field_name)
    return parts.scheme, parts.hostname.lower().rstrip("."), port or (443 if parts.scheme == "https" else 80)


async def resolve_checked(url: str, policy: UrlPolicy, field_name: str = "url") -> list[Address]:
    """The addresses `url` may be fetched from; UnsafeUrl when any resolved address is not allowed."""
    _scheme, host, port = _parse(url, policy, field_name)
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
        addresses: list[Address] = [literal]
    except ValueError:
        literal = None
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            raise UrlFetchFailed(f"{field_name} host {host!r} does not resolve", field=field_name) from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    if literal is None and host in policy.allowed_hosts:
        return addresses
    refused = [str(a) for a in addresses if not policy.address_allowed(a)]
    if refused:
        raise UnsafeUrl(
            f"{field_name} points at a non-public address ({', '.join(refused)}); refused",
            field=field_name, host=host,
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
