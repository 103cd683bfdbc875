"""YouTube on 127.0.0.1, for the real YouTube extractor of yt-dlp: a TLS server that answers the
watch page (``/watch?v=ID``, with its embedded ``ytInitialPlayerResponse``) and the innertube
player API (``POST /youtubei/v1/player``) with constructed player responses, each video's
``playabilityStatus`` as YouTube words it: the bot wall, an age gate, a private video, a removed
video, a members-only video.

Only the test maps the host names (:func:`serve_youtube`): ``socket.getaddrinfo`` answers
YouTube's hosts with this server's address and port, and yt-dlp's CA bundle (certifi's) is this
test's own CA. The request policy, the extractor and the TLS checks are production's.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

#: YouTube's host names this server answers for (and its certificate names).
MEDIA_HOST = "rr1---sn-cifa.googlevideo.com"
HOSTS = ("youtube.com", "www.youtube.com", "m.youtube.com", "i.ytimg.com", MEDIA_HOST)

_LOGIN_HINT = "This helps protect our community. Learn more"

#: The player responses' playability, per video id (11 characters, as YouTube's are).
PLAYABILITY: dict[str, dict[str, Any]] = {
    # The bot wall, as YouTube has answered an address it distrusts since 2024 (yt-dlp#10128).
    "cifaBotWall": {
        "status": "LOGIN_REQUIRED",
        "reason": "Sign in to confirm you\u2019re not a bot",
        "errorScreen": {
            "playerErrorMessageRenderer": {
                "reason": {"simpleText": "Sign in to confirm you\u2019re not a bot"},
                "subreason": {"simpleText": _LOGIN_HINT},
            }
        },
    },
    "cifaAgeGate": {
        "status": "LOGIN_REQUIRED",
        "reason": "Sign in to confirm your age",
        "errorScreen": {
            "playerErrorMessageRenderer": {
                "reason": {"simpleText": "Sign in to confirm your age"},
                "subreason": {"simpleText": "This video may be inappropriate for some users."},
            }
        },
    },
    "cifaPrivate": {
        "status": "LOGIN_REQUIRED",
        "reason": "Private video",
        "errorScreen": {
            "playerErrorMessageRenderer": {
                "reason": {"simpleText": "Private video"},
                "subreason": {"simpleText": "Sign in if you've been granted access to this video"},
            }
        },
    },
    "cifaRemoved": {
        "status": "ERROR",
        "reason": "This video has been removed by the uploader",
        "errorScreen": {
            "playerErrorMessageRenderer": {
                "reason": {"simpleText": "This video has been removed by the uploader"}
            }
        },
    },
    "cifaMembers": {
        "status": "UNPLAYABLE",
        "reason": (
            "Join this channel to get access to members-only content like this video, and "
            "other exclusive perks."
        ),
    },
}


@dataclass(frozen=True)
class Seen:
    """One request the server answered."""

    host: str
    method: str
    path: str
    video_id: str | None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _player_response(self, video_id: str, client: str = "WEB") -> dict[str, Any]:
        playability = self.server.playability.get(
            video_id, {"status": "ERROR", "reason": "Video unavailable"}
        )
        response: dict[str, Any] = {
            "responseContext": {},
            "playabilityStatus": playability,
            "videoDetails": {"videoId": video_id, "title": f"Test film {video_id}"},
        }
        film = self.server.films.get(video_id)
        if playability.get("status") == "OK" and film is not None:
            # One progressive MP4, served by this server as YouTube's media host would, at an
            # address naming the client that asked (its ``c`` parameter), as YouTube's do.
            with self.server.lock:
                self.server.clients_given.setdefault(video_id, set()).add(client)
            response["videoDetails"]["lengthSeconds"] = "2"
            response["streamingData"] = {
                "formats": [
                    {
                        "itag": 18,
                        "url": f"https://{MEDIA_HOST}/videoplayback?id={video_id}&c={client}",
                        "mimeType": 'video/mp4; codecs="avc1.42001E, mp4a.40.2"',
                        "bitrate": 500000,
                        "width": 320,
                        "height": 240,
                        "contentLength": str(film.stat().st_size),
                        "quality": "medium",
                        "qualityLabel": "240p",
                    }
                ]
            }
        return response

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _seen(self, video_id: str | None) -> None:
        host = (self.headers.get("Host") or "").split(":")[0]
        with self.server.lock:
            self.server.seen.append(Seen(host, self.command, self.path, video_id))
            then = self.server.when_asked.pop(video_id, None) if video_id else None
        if then is not None:
            then()

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        video_id = (parse_qs(parts.query).get("v") or [None])[0]
        self._seen(video_id)
        if parts.path == "/videoplayback":
            media_id = str(video_id or parse_qs(parts.query).get("id", [""])[0])
            film = self.server.films.get(media_id)
            if film is None:
                self._answer(404, b"", "text/plain")
                return
            if media_id in self.server.media_refused:
                # What googlevideo.com answers an address (or a missing PO token) it distrusts.
                self._answer(403, b"", "text/plain")
                return
            self._answer(200, film.read_bytes(), "video/mp4")
            return
        if parts.path.startswith("/embed/"):
            # The embedded player's page, asked for its configuration when a video is age-gated
            # (yt-dlp then tries the embedded client).
            ytcfg = json.dumps(
                {
                    "INNERTUBE_CONTEXT": {
                        "client": {"clientName": "WEB_EMBEDDED_PLAYER", "clientVersion": "1.0"}
                    },
                    "INNERTUBE_CONTEXT_CLIENT_NAME": 56,
                }
            )
            page = f"<html><body><script>ytcfg.set({ytcfg});</script></body></html>"
            self._answer(200, page.encode(), "text/html; charset=utf-8")
            return
        if parts.path != "/watch" or not video_id:
            self._answer(404, b"not here", "text/plain")
            return
        response = json.dumps(self._player_response(video_id))
        initial_data = json.dumps({"responseContext": {}, "contents": {"watch": {}}})
        page = (
            "<!DOCTYPE html><html><head><title>YouTube</title></head><body>"
            f"<script>var ytInitialPlayerResponse = {response};</script>"
            f"<script>var ytInitialData = {initial_data};</script>"
            "</body></html>"
        )
        self._answer(200, page.encode(), "text/html; charset=utf-8")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            asked = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            asked = {}
        video_id = asked.get("videoId") if isinstance(asked, dict) else None
        self._seen(video_id)
        if urlsplit(self.path).path != "/youtubei/v1/player" or not isinstance(video_id, str):
            self._answer(404, b"{}", "application/json")
            return
        context = asked.get("context") or {}
        client = str((context.get("client") or {}).get("clientName") or "WEB")
        body = json.dumps(self._player_response(video_id, client)).encode()
        self._answer(200, body, "application/json; charset=utf-8")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.lock = threading.Lock()
        self.seen: list[Seen] = []
        self.playability = dict(PLAYABILITY)
        self.films: dict[str, Path] = {}
        self.media_refused: set[str] = set()
        self.when_asked: dict[str, Callable[[], None]] = {}  # video id: run once when asked
        self.clients_given: dict[str, set[str]] = {}  # video id: clients its media was offered to

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client closing early is not the test's business


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA of this test only, and a certificate it signed for YouTube's hosts: (CA, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cifa test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.youtube.com")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(host) for host in HOSTS]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "youtube.pem", folder / "youtube.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class FakeYouTube:
    """The running server: its requests (``seen``) and each video's playability (to change)."""

    def __init__(self, server: _Server) -> None:
        self._server = server

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def playability(self) -> dict[str, dict[str, Any]]:
        return self._server.playability

    def make_playable(self, video_id: str, film: Path) -> None:
        """From now on, ``video_id`` plays: its player response offers ``film`` as one MP4."""
        self._server.films[video_id] = film
        self._server.playability[video_id] = {"status": "OK"}

    def clients_given(self, video_id: str) -> set[str]:
        """The YouTube clients whose player response offered ``video_id``'s media."""
        with self._server.lock:
            return set(self._server.clients_given.get(video_id, set()))

    def when_asked(self, video_id: str, then: Callable[[], None]) -> None:
        """Run ``then`` (once) when ``video_id`` is first asked about, before it is answered:
        something that happens elsewhere at that instant (another work meeting a block)."""
        with self._server.lock:
            self._server.when_asked[video_id] = then

    def refuse_media(self, video_id: str) -> None:
        """From now on, the media host answers 403 for ``video_id``'s media (its watch page and
        player response still say it plays): a block after the metadata phase."""
        self._server.media_refused.add(video_id)

    @property
    def seen(self) -> list[Seen]:
        with self._server.lock:
            return list(self._server.seen)

    def asked_about(self, video_id: str) -> list[Seen]:
        return [s for s in self.seen if s.video_id == video_id]


@contextmanager
def serve_youtube(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeYouTube]:
    """YouTube on 127.0.0.1 for this test: its hosts resolve to the server (port 443 to its
    port), and yt-dlp trusts the test's CA instead of certifi's bundle."""
    import certifi

    ca, cert, key = _certificates(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = _Server(context)
    port = server.server_address[1]
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(
        host: Any, service: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host or "")
        if name.rstrip(".").lower() in HOSTS:
            return real_getaddrinfo("127.0.0.1", port, socket.AF_INET, type, proto, flags)
        return real_getaddrinfo(host, service, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(certifi, "where", lambda: str(ca))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # for yt-dlp without certifi
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeYouTube(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
