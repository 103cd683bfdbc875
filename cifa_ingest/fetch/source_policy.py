"""Which source addresses the archive may contact.

Only http and https; host names only from an allow-list (``[fetch] allowed_hosts`` in
``config/cifa.toml``: the platforms of the catalogue and the hosts they serve media from).
Loopback, private, link-local and other non-public addresses are refused unless explicitly allowed
(the demo and tests serve films from 127.0.0.1): a catalogue entry, or a redirect sent by a source,
must never turn the pipeline into a probe of the archive's own network. The policy is applied to
every request yt-dlp makes, redirects included (:mod:`cifa_ingest.fetch.request_policy`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cifa_ingest.errors import SourcePolicyError

if TYPE_CHECKING:
    from cifa_ingest.config import FetchSettings

ALLOWED_SCHEMES = frozenset({"http", "https"})
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
#: How a refused private source is allowed, said the same way wherever the refusal is read: on a
#: terminal (the option) and in a Prefect run's state or log (the run's parameter).
PRIVATE_SOURCES_HINT = (
    "to fetch from it, pass --allow-private-sources to cifa, or run the Prefect deployment with"
    " the parameter allow_private_sources=true"
)


def check_url_syntax(url: str) -> None:
    """Refuse anything that is not an absolute http(s) URL with a host."""
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError("URL contains white space or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise ValueError(f"only http and https URLs are accepted, not {parts.scheme or 'none'}:")
    if not parts.hostname:
        raise ValueError("URL has no host")
    if parts.username or parts.password:
        raise ValueError("URL must not carry a user name or password")


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def literal_address_problem(url: str) -> str | None:
    """Why ``url`` names a non-public host by itself (an IP literal or localhost), or None.

    This needs no DNS, so a catalogue can be checked before any network request."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return f"host {host} is the local machine"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not _is_public(address):
        return f"address {address} is not a public address"
    return None


def check_source_allowed(url: str, *, allow_private: bool, resolve: bool = True) -> None:
    """Raise SourcePolicyError when the archive must not contact ``url``.

    With ``resolve``, the host name is looked up too, so that a public-looking name that points
    at a private address is refused as well."""
    try:
        check_url_syntax(url)
    except ValueError as exc:
        raise SourcePolicyError(f"{url}: {exc}") from None
    if allow_private:
        return
    problem = literal_address_problem(url)
    if problem is None and resolve:
        host = urlsplit(url).hostname or ""
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            raise SourcePolicyError(f"{url}: cannot resolve host {host}: {exc}") from None
        for info in infos:
            # An IPv6 address may carry its zone ("fe80::1%eth0"); only an AF_INET(6) address
            # is asked for (proto TCP), so the host is text: str() only says so to the types.
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if not _is_public(address):
                problem = f"host {host} resolves to non-public address {address}"
                break
    if problem:
        raise SourcePolicyError(f"{url}: {problem}; refused ({PRIVATE_SOURCES_HINT})")


def host_allowed(host: str, allowed_hosts: Iterable[str]) -> bool:
    """Whether ``host`` is one of ``allowed_hosts`` or a subdomain of one."""
    host = host.rstrip(".").lower()
    return any(host == entry or host.endswith("." + entry) for entry in allowed_hosts)


@dataclass(frozen=True)
class SourcePolicy:
    """The rules for every request of a fetch: scheme, host allow-list, address ranges.

    With ``allow_private``, IP literals and names on non-public addresses are allowed (the demo
    and tests); host names must still be on the allow-list."""

    allowed_hosts: tuple[str, ...]
    allow_private: bool = False
    resolve: bool = True

    @classmethod
    def of(cls, fetch: FetchSettings, allow_private: bool, *, resolve: bool = True) -> SourcePolicy:
        """The policy of the ``[fetch]`` settings. ``resolve=False`` for the checks made before
        anything is fetched: names are resolved (and judged) when they are requested."""
        return cls(tuple(fetch.allowed_hosts), allow_private=allow_private, resolve=resolve)

    def check(self, url: str) -> None:
        """Raise SourcePolicyError when ``url`` must not be requested."""
        try:
            check_url_syntax(url)
        except ValueError as exc:
            raise SourcePolicyError(f"{url}: {exc}") from None
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
        is_literal = _is_ip_literal(host)
        if self.allow_private and (is_literal or host in _LOCAL_NAMES):
            return
        if not self.allow_private and (problem := literal_address_problem(url)):
            # Said first: "the local machine" is more to the point than "not on the allow-list".
            raise SourcePolicyError(f"{url}: {problem}; refused ({PRIVATE_SOURCES_HINT})")
        if not is_literal and not host_allowed(host, self.allowed_hosts):
            raise SourcePolicyError(
                f"{url}: host {host} is not on the allow-list ([fetch] allowed_hosts); refused"
            )
        check_source_allowed(url, allow_private=self.allow_private, resolve=self.resolve)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
