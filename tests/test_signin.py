"""Signed-in access, an operator's recorded choice (issue 17): a cookies file per host.

A server on 127.0.0.1 serves its films only to a request carrying a given cookie (else 403).
Without the cookie the film is refused; with the cookies file (named in the environment) the
ingest preserves it, capture.json says signed in and the account's label, a redirect to another
host gets no cookie, the file's other host's cookie is sent nowhere, and afterwards the cookies'
values are searched for in everything the archive and Prefect hold, the terminal and every log
record: they are nowhere. A bad cookies file is refused as bad settings (exit 2), without a
traceback and without its content.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

import pytest
import yaml

from cifa_ingest import cli
from cifa_ingest.config import load_settings
from cifa_ingest.demo import http_server
from cifa_ingest.demo.http_server import LocalFileServer
from cifa_ingest.errors import ConfigError
from cifa_ingest.fetch import signin
from cifa_ingest.fetch.source_policy import SourcePolicy
from cifa_ingest.fetch.ytdlp import _ArchivalYoutubeDL
from tests.conftest import TEST_CONFIG
from tests.test_personal_details import _holders, _Records

#: The session cookie of the signed-in account, and a cookie of another host in the same file.
SECRET = "cifa-cookie-SECRET-4b8e1d"
OTHER_SECRET = "cifa-other-host-SECRET-90a7"
ACCOUNT = "archive-test-account-1"
COOKIES = (
    "# Netscape HTTP Cookie File\n"
    f"127.0.0.1\tFALSE\t/\tFALSE\t2000000000\tcifa_session\t{SECRET}\n"
    f".youtube.com\tTRUE\t/\tTRUE\t2000000000\tSID\t{OTHER_SECRET}\n"
)


class _Gate(http_server._Handler):
    """The demo server's handler, answering 403 unless the request has the cookie required;
    every request's Cookie header is kept (``server.cookies``)."""

    required: str | None = None

    def _route(self) -> bool:
        with self.server.lock:
            self.server.cookies.append(self.headers.get("Cookie"))  # type: ignore[attr-defined]
        if self.required and self.required not in (self.headers.get("Cookie") or ""):
            self.requested_path = self.path
            self.send_error(403)
            return True
        return super()._route()


def _gate(root: Path, required: str | None) -> LocalFileServer:
    server = LocalFileServer(root)
    gate = type("Gate", (_Gate,), {"required": required})
    server._server.RequestHandlerClass = partial(gate, directory=os.fspath(root))
    server._server.cookies = []  # type: ignore[attr-defined]
    return server


def _cookies_file(path: Path, text: str = COOKIES) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    path.chmod(0o600)
    return path


def _catalogue(path: Path, urls: list[str]) -> Path:
    permission = {"status": "granted", "granted_by": "The director", "basis": "A letter"}
    works = [
        {
            "id": f"cifa-si-000{n}",
            "title": {"en": f"A members' film {n}"},
            "source": {"url": url},
            "permission": dict(permission),
        }
        for n, url in enumerate(urls, start=1)
    ]
    path.write_text(yaml.safe_dump({"works": works}), "utf-8")
    return path


def _ingest(catalogue: Path, archive: Path, records: _Records) -> int:
    root, prefect = logging.getLogger(), logging.getLogger("prefect")
    levels = (root.level, prefect.level)
    ours = [logging.getLogger(name) for name in ("cifa_ingest", "bagit")]
    saved = [(logger.handlers[:], logger.level, logger.propagate) for logger in ours]
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    prefect.setLevel(logging.DEBUG)
    try:
        return cli.main(
            ["ingest", str(catalogue), "--archive", str(archive), "--allow-private-sources",
             "--json", "--verbose"]
        )  # fmt: skip
    finally:
        root.removeHandler(records)
        root.setLevel(levels[0])
        prefect.setLevel(levels[1])
        for logger, (handlers, level, propagate) in zip(ours, saved, strict=True):
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate


def test_signed_in_access_is_recorded_and_its_secrets_are_nowhere(
    tmp_path: Path,
    served_root: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    import cifa_ingest.pipelines.flows  # noqa: F401 - Prefect configures its logging on import

    cookies = _cookies_file(tmp_path / "private" / "cookies-4b8e.txt")
    archive = tmp_path / "archive"
    monkeypatch.setenv("CIFA_COOKIES_FILE", str(cookies))
    monkeypatch.setenv("CIFA_COOKIES_HOST", "127.0.0.1")
    monkeypatch.setenv("CIFA_COOKIES_ACCOUNT", ACCOUNT)
    with (
        _gate(served_root, f"cifa_session={SECRET}") as members,
        _gate(served_root, None) as elsewhere,
    ):
        # Sent on to another host (its address by another name): the cookie must not follow.
        url = f"{members.base_url}/redirect/localhost:{elsewhere.base_url.rsplit(':', 1)[1]}"
        url += "/films/three-days-day-1.mp4"
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(url, timeout=10)  # not signed in: refused
        catalogue = _catalogue(tmp_path / "signed-in-4b8e.yaml", [url])
        records = _Records()
        status = _ingest(catalogue, archive, records)
        out, err = capsys.readouterr()
        assert status == 0, err
        outcomes = {w["id"]: w["outcome"] for w in json.loads(out)["works"]}
        assert outcomes == {"cifa-si-0001": "preserved"}
        sent = members._server.cookies  # type: ignore[attr-defined]
        assert f"cifa_session={SECRET}" in sent
        assert elsewhere.requests and not any(elsewhere._server.cookies)  # type: ignore[attr-defined]
    assert not any(OTHER_SECRET in (cookie or "") for cookie in sent)

    capture = json.loads((archive / "bags/cifa-si-0001/metadata/capture.json").read_text("utf-8"))
    assert (capture["sources"][0]["signed_in"], capture["sources"][0]["account"]) == (True, ACCOUNT)

    logged = "\n".join(records.lines)
    assert "Finished in state" in logged and "yt-dlp: " in err  # really verbose
    for secret in (SECRET, OTHER_SECRET):
        assert secret not in out + err, "a cookie on the terminal"
        assert secret not in logged, "a cookie in a log record"
    prefect_home = Path(os.environ["PREFECT_HOME"])
    assert _holders(prefect_home, (catalogue.name,)), "the run is not in this Prefect home"
    assert _holders(prefect_home, (SECRET, OTHER_SECRET, cookies.name)) == set()
    assert _holders(archive, (SECRET, OTHER_SECRET, cookies.name)) == set()
    assert not list(archive.rglob(".cookies-*")), "a jar left behind"


def test_a_bad_cookies_file_is_refused_without_a_traceback_or_its_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tmp_path / "cifa.toml"
    settings.write_text(
        TEST_CONFIG.read_text("utf-8").replace(
            "[fetch]\n",
            '[fetch]\ncookies = [{ host = "youtube.com", file = "yt.txt", account = "yt-1" }]\n',
        ),
        "utf-8",
    )
    monkeypatch.setenv("CIFA_CONFIG", str(settings))
    cookies = tmp_path / "yt.txt"
    for text, mode, said in [
        (f"SID={SECRET}; HSID={SECRET}\n", 0o600, "is not a Netscape cookies file"),
        (COOKIES, 0o644, "may be read by other users"),
    ]:
        cookies.write_text(text, "utf-8")
        cookies.chmod(mode)
        assert cli.main(["status", "--archive", str(tmp_path / "archive")]) == 2
        out, err = capsys.readouterr()
        assert said in err and "Traceback" not in err + out, err
        assert SECRET not in err + out
    cookies.unlink()
    with pytest.raises(ConfigError, match=r"yt\.txt: cannot read"):
        load_settings(settings)
    # Only a host the source policy allows; the environment's entry is whole or refused.
    _cookies_file(cookies)
    with pytest.raises(ConfigError, match="not on the allow-list"):
        load_settings(_with(settings, 'host = "youtube.com"', 'host = "example.org"'))
    monkeypatch.setenv("CIFA_COOKIES_FILE", str(cookies))
    with pytest.raises(ConfigError, match="set all three, or none"):
        load_settings(settings)


def _with(settings: Path, old: str, new: str) -> Path:
    changed = settings.with_name("changed.toml")
    changed.write_text(settings.read_text("utf-8").replace(old, new), "utf-8")
    return changed


def test_the_cookies_stay_out_of_settings_records_and_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What Prefect stores of the settings has no cookies entry; a PO token in a settings file
    is refused, the environment's goes to yt-dlp; yt-dlp's messages are scrubbed; yt-dlp's info
    loses the cookies it sent."""
    settings = tmp_path / "cifa.toml"
    _cookies_file(tmp_path / "yt.txt")
    settings.write_text(
        '[fetch]\ncookies = [{ host = "youtube.com", file = "yt.txt", account = "yt-1" }]\n'
        '[fetch.extractor_args.youtubepot-bgutilhttp]\nbase_url = ["http://127.0.0.1:4416"]\n',
        "utf-8",
    )
    loaded = load_settings(settings)
    assert loaded.fetch.cookies[0].file == str(tmp_path / "yt.txt")
    # As Prefect stores a flow's parameters: without the cookies entry.
    assert "yt.txt" not in loaded.model_dump_json()
    assert "cookies" not in loaded.model_dump()["fetch"]
    with pytest.raises(ConfigError, match="po_token is a secret"):
        load_settings(_with(settings, "youtubepot-bgutilhttp]\nbase_url", "youtube]\npo_token"))
    monkeypatch.setenv(signin.PO_TOKEN_ENV, f"web.gvs+{SECRET}")
    assert signin.extractor_args(loaded.fetch) == {
        "youtubepot-bgutilhttp": {"base_url": ["http://127.0.0.1:4416"]},
        "youtube": {"po_token": [f"web.gvs+{SECRET}"]},
    }
    with signin.signed_in("https://www.youtube.com/watch?v=x", loaded.fetch, tmp_path) as sign:
        assert (sign.account, sign.cookiefile and sign.cookiefile.stat().st_mode & 0o777) == (
            "yt-1",
            0o600,
        )
        assert SECRET not in sign.scrub(f"po_token=web.gvs+{SECRET}")
    assert not sign.cookiefile.exists()

    sign = signin.SignIn(account="yt-1", secret_values=(SECRET,))
    assert SECRET not in sign.scrub(f"[debug] Cookie: SID={SECRET}\nsaw {SECRET} again")
    assert "secret-header" not in sign.scrub("Cookie: a=secret-header")
    info = {"formats": [{"url": "u", "cookies": f"SID={SECRET}", "http_headers": {"Cookie": "x"}}]}
    assert SECRET not in json.dumps(signin.without_cookies(info))
    # The info JSON yt-dlp writes is its sanitize_info's: without them too.
    ydl = _ArchivalYoutubeDL({"quiet": True}, SourcePolicy(("youtube.com",)))
    assert SECRET not in json.dumps(ydl.sanitize_info(info, True))
