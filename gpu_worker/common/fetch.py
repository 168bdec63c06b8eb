"""Safe requests to URLs users give: http(s) only, public addresses only, bounded size and time.

An image or audio URL comes from a user, so the worker must not be usable to reach its own network
(SSRF); nor may the API through a deployment's webhook URL (`pinned_request`). Every hop of a
redirect is resolved and checked before it is fetched, and the request goes to the address
that was checked (Host header and TLS name kept), so a DNS answer that changes between the
check and the connection (DNS rebinding) cannot reach another address. The size cap holds
while streaming, so a lying Content-Length cannot exhaust memory; an overall deadline holds
too, so a server that sends a byte at a time cannot hold a download open; and downloads run on
threads of their own (`on_fetch_threads`), so slow remotes cannot take the threads that
storage, signing or parsing need.
"""

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import SplitResult, unquote, urljoin, urlsplit, urlunsplit

import httpx

from gpu_worker.common.refusal import Refused, TooLarge

IMAGE_TYPES = ("image/",)
# Audio and the containers it comes in (webm, mp4/m4a, ogg), and what storage serves untyped.
AUDIO_TYPES = ("audio/", "video/", "application/ogg", "application/octet-stream")
MAX_REDIRECTS = 3
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
EVERYWHERE = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix: IPv4 behind a gateway
DEADLINE_S = 30.0  # a whole download, redirects included
FETCH_THREADS = 16
_THREADS = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="fetch")
T = TypeVar("T")


async def on_fetch_threads(call: Callable[..., T], *args: Any) -> T:
    """`call(*args)`, which downloads, on the fetch threads (at most FETCH_THREADS at once;
    more wait their turn there, not on anyone else's threads)."""
    return await asyncio.get_running_loop().run_in_executor(_THREADS, call, *args)


class FetchError(Refused):
    """The file could not be fetched; the message says why, for the caller."""


class FetchTooLarge(FetchError, TooLarge):
    """The file is over the size limit."""


def public_address(host: str, port: int, allowed: Sequence[Network] = ()) -> str:
    """The address to connect to for `host`, once every address it resolves to is checked
    (public, or in `allowed`); FetchError otherwise."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve host {host!r}") from exc
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if any(address in network for network in allowed):
            continue
        # loopback, private, link-local (metadata), reserved..., also as an IPv6 form of one
        if not all(form.is_global for form in (address, *_embedded_ipv4(address))):
            raise FetchError(f"host {host!r} resolves to a non-public address")
    return str(infos[0][4][0])


def _embedded_ipv4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[Any]:
    """The IPv4 address an IPv6 one reaches: IPv4-mapped, 6to4, NAT64 (64:ff9b::/96)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    if address in NAT64:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return [form for form in (address.ipv4_mapped, address.sixtofour) if form is not None]


def _under(url: str, prefixes: Sequence[str]) -> bool:
    """Whether `url` is under one of `prefixes`, compared parsed: the same scheme, host and
    port, no user part, and a path at or below the prefix's (no `..` climbing out of it)."""
    parts = urlsplit(url)
    path = unquote(parts.path)
    try:
        if ".." in path.split("/") or parts.username is not None or not parts.hostname:
            return False
        _port(parts)
    except ValueError:  # a port that is not a number
        return False
    for prefix in map(urlsplit, prefixes):
        base = unquote(prefix.path).rstrip("/")
        if (parts.scheme, parts.hostname, _port(parts)) == (
            prefix.scheme,
            prefix.hostname,
            _port(prefix),
        ) and (path == base or path.startswith(base + "/")):
            return True
    return False


def _port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def pinned_request(
    method: str,
    url: str,
    allowed: Sequence[Network] = (),
    allowed_prefixes: Sequence[str] = (),
    **request: Any,
) -> httpx.Request:
    """A request to `url` sent to the address checked for its host (any address for a URL
    under `allowed_prefixes`); `request`: httpx.Request's content, headers..."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"{url[:100]!r} is not an http or https URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    trusted = EVERYWHERE if _under(url, allowed_prefixes) else allowed
    address = public_address(parts.hostname, port, trusted)
    literal = f"[{address}]" if ":" in address else address
    pinned = urlunsplit(parts._replace(netloc=f"{literal}:{port}"))
    headers = {**request.pop("headers", {}), "Host": parts.netloc.rsplit("@", 1)[-1]}
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    return httpx.Request(method, pinned, headers=headers, extensions=extensions, **request)


def fetch_bytes(
    url: str,
    *,
    what: str = "image",
    allowed_types: tuple[str, ...] = IMAGE_TYPES,
    max_bytes: int,
    connect_timeout: float,
    read_timeout: float,
    deadline_s: float = DEADLINE_S,
    allowed_networks: Sequence[Network] = (),
    allowed_prefixes: Sequence[str] = (),
) -> bytes:
    """The body of `url` if it is `what` (a content type in `allowed_types`) of at most
    `max_bytes`, downloaded within `deadline_s` in all; FetchError otherwise. A URL must
    resolve to public addresses only, unless into `allowed_networks` or under one of
    `allowed_prefixes` (exact URL prefixes, e.g. an API's own signed-object path); every
    redirect is checked again."""
    end = time.monotonic() + deadline_s
    with httpx.Client(follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            request = pinned_request("GET", url, allowed_networks, allowed_prefixes)
            left = max(end - time.monotonic(), 0.001)
            request.extensions["timeout"] = httpx.Timeout(
                min(read_timeout, left), connect=min(connect_timeout, left)
            ).as_dict()
            try:
                response = client.send(request, stream=True)
                try:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    return _read(response, what, allowed_types, max_bytes, end)
                finally:
                    response.close()
            except (httpx.TimeoutException, TimeoutError) as exc:
                if time.monotonic() < end:  # one read stalled, before the deadline
                    raise FetchError(f"timed out downloading the {what}") from exc
                raise FetchError(f"the {what} did not download within {deadline_s:g} s") from exc
            except httpx.HTTPError as exc:
                raise FetchError(f"cannot download the {what}: {type(exc).__name__}") from exc
    raise FetchError(f"more than {MAX_REDIRECTS} redirects")


def _read(
    response: httpx.Response,
    what: str,
    allowed_types: tuple[str, ...],
    max_bytes: int,
    end: float,
) -> bytes:
    if response.status_code != 200:
        raise FetchError(f"{what} URL answered HTTP {response.status_code}")
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not content_type.startswith(allowed_types):
        raise FetchError(f"{what} URL returned {content_type or 'no content type'}, not an {what}")
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchTooLarge(f"{what} is larger than {max_bytes} bytes")
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise FetchTooLarge(f"{what} is larger than {max_bytes} bytes")
        if time.monotonic() > end:
            raise TimeoutError
    return bytes(body)


class UploadFailed(Exception):
    """An upload URL did not take the file: the API's storage, not the client, is at fault."""


def upload_bytes(
    url: str,
    data: bytes,
    content_type: str,
    *,
    timeout: float,
    allowed_networks: Sequence[Network] = (),
    allowed_prefixes: Sequence[str] = (),
) -> None:
    """PUT `data` to a signed upload URL (the stack's storage: GCS, Supabase Storage or the
    local API's objects), under the same address rules as a download."""
    try:
        request = pinned_request(
            "PUT",
            url,
            allowed_networks,
            allowed_prefixes,
            content=data,
            headers={"Content-Type": content_type},
        )
        with httpx.Client(timeout=timeout) as client:
            response = client.send(request)
    except (FetchError, httpx.HTTPError) as exc:
        raise UploadFailed(f"cannot upload the image: {exc or type(exc).__name__}") from exc
    if response.status_code not in (200, 201, 204):
        raise UploadFailed(f"the upload URL answered HTTP {response.status_code}")
