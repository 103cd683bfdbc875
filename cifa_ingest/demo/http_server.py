"""A small HTTP file server on 127.0.0.1 that records every request, and can misbehave on cue.

The demo and the tests serve generated films from it, so that the real yt-dlp fetches over real
HTTP without the internet. Its access log is how a test proves what was (and was not) requested.
It answers Range requests (206), as real film hosts do, and a path prefix asks it for the faults
real hosts have:

    /drop-once/<path>        the first full GET of <path> is cut off half way (Content-Length
                             announces the whole file): the client must resume with Range
    /busy-once/<path>        the first request of <path> gets 429 with Retry-After: 1
    /error-once/<path>       the first request of <path> gets 503
    /status/<code>/<path>    always answers <code> (e.g. 404, 410, 403)
    /redirect/<host>/<path>  302 to http://<host>/<path>
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_FAULT = re.compile(r"^/(drop-once|busy-once|error-once)(/.*)$")
_STATUS = re.compile(r"^/status/(\d{3})(/.*)$")
_REDIRECT = re.compile(r"^/redirect/([^/]+)(/.*)$")


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    range: str | None
    status: int
    at: float  # time.monotonic() when the response started


class _Handler(SimpleHTTPRequestHandler):
    server: _RecordingServer
    requested_path = ""
    extensions_map = {  # noqa: RUF012 - the stdlib's own class attribute, extended
        **SimpleHTTPRequestHandler.extensions_map,
        ".m3u8": "application/vnd.apple.mpegurl",
        ".ts": "video/mp2t",
        ".vtt": "text/vtt",
        ".srt": "application/x-subrip",
        ".mkv": "video/x-matroska",
        ".mp4": "video/mp4",
        ".m4a": "audio/mp4",
    }

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: requests are recorded in ``requests``, not printed."""

    def send_response(self, code: int, message: str | None = None) -> None:
        with self.server.lock:
            self.server.requests.append(
                Request(
                    self.command,
                    self.requested_path,
                    self.headers.get("Range"),
                    int(code),
                    time.monotonic(),
                )
            )
        super().send_response(code, message)

    def _first_time(self, key: str) -> bool:
        with self.server.lock:
            if key in self.server.faults_done:
                return False
            self.server.faults_done.add(key)
            return True

    def _route(self) -> bool:
        """Answer the fault and redirect prefixes; True when the request was answered."""
        self.requested_path = self.path  # as asked for, before a fault prefix is taken off
        if match := _STATUS.match(self.path):
            self.send_error(int(match.group(1)))
            return True
        if match := _REDIRECT.match(self.path):
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", f"http://{match.group(1)}{match.group(2)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        if match := _FAULT.match(self.path):
            fault, rest = match.groups()
            self.path = rest
            if fault == "busy-once" and self._first_time(self.requestline):
                self.send_response(HTTPStatus.TOO_MANY_REQUESTS)
                self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True
            if fault == "error-once" and self._first_time(self.requestline):
                self.send_error(HTTPStatus.SERVICE_UNAVAILABLE)
                return True
            if fault == "drop-once" and self.command == "GET" and "Range" not in self.headers:
                return self._drop_half_way(rest)
        return False

    def _drop_half_way(self, path_in_root: str) -> bool:
        path = Path(self.translate_path(path_in_root))
        if not path.is_file() or not self._first_time(f"drop {path_in_root}"):
            return False
        size = path.stat().st_size
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Length", str(size))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        with path.open("rb") as fh:
            self.wfile.write(fh.read(size // 2))
        self.wfile.flush()
        with self.server.lock:
            self.server.dropped.append((path_in_root, size // 2))
        self.close_connection = True
        self.connection.shutdown(2)
        return True

    def do_HEAD(self) -> None:
        if not self._route():
            super().do_HEAD()

    def do_GET(self) -> None:
        if self._route():
            return
        match = _RANGE.match(self.headers.get("Range", ""))
        if not match:
            super().do_GET()
            return
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        size = path.stat().st_size
        first, last = match.groups()
        start = int(first) if first else max(0, size - int(last or 0))
        end = min(int(last) if first and last else size - 1, size - 1)
        if start >= size or start > end:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.end_headers()
            return
        self.send_response(HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        with path.open("rb") as fh:
            fh.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                chunk = fh.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)

    def end_headers(self) -> None:
        self.send_header("Accept-Ranges", "bytes")
        super().end_headers()


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.requests: list[Request] = []
        self.faults_done: set[str] = set()
        self.dropped: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def handle_error(self, request: object, client_address: object) -> None:
        """A client closing early (yt-dlp probes a file, then reconnects) is not an error."""


class LocalFileServer:
    """Serve ``root`` on 127.0.0.1 (a free port) in a background thread (a context manager)."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        handler = partial(_Handler, directory=os.fspath(root))
        self._server = _RecordingServer((host, port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        name = host.decode("ascii") if isinstance(host, bytes) else host
        return f"http://{name}:{port}"

    @property
    def requests(self) -> list[Request]:
        """Every request so far, in order."""
        with self._server.lock:
            return list(self._server.requests)

    @property
    def dropped(self) -> list[tuple[str, int]]:
        """(path, bytes sent) of every connection cut off on purpose."""
        with self._server.lock:
            return list(self._server.dropped)

    def requested_paths(self) -> set[str]:
        return {request.path.split("?", 1)[0] for request in self.requests}

    def start(self) -> LocalFileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalFileServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
