"""HTTP downloads with retries, back-off, resumable ``.part`` files and checksums."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Any

from mlib.data.errors import ChecksumError, DataUnavailable
from mlib.data.mirror import HOW_TO
from mlib.progress import progress
from mlib.provenance import file_digest

log = logging.getLogger(__name__)

USER_AGENT = "mlib/0.1 (+reproducible crystal-GNN study)"
TRANSIENT = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, socket.timeout)


def _checksum_ok(path: Path, checksum: tuple[str, str] | None) -> bool:
    return checksum is None or file_digest(path, checksum[0]) == checksum[1].lower()


def fetch(
    url: str,
    dest: Path,
    checksum: tuple[str, str] | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    desc: str | None = None,
) -> Path:
    """Download ``url`` to ``dest`` unless a verified copy is already there.

    ``checksum`` is ``(algorithm, hexdigest)``, e.g. ``("md5", "...")``. A cached file whose digest
    does not match is treated as corrupt and fetched again. An interrupted download leaves
    ``dest.part`` behind, and the next attempt resumes it with an HTTP Range request. Transient
    failures are retried ``retries`` times with exponential back-off.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if _checksum_ok(dest, checksum):
            return dest
        log.warning("cached %s fails its %s check; fetching it again", dest, checksum[0] if checksum else "")
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            _download(url, part, timeout, desc or dest.name)
        except urllib.error.HTTPError as exc:
            if exc.code not in (408, 429) and exc.code < 500:
                raise DataUnavailable(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            last_error = exc
            continue
        except TRANSIENT as exc:
            last_error = exc
            log.warning("download of %s interrupted (%s); attempt %d of %d", url, exc, attempt + 1, retries + 1)
            continue
        if not _checksum_ok(part, checksum):
            part.unlink()
            last_error = ChecksumError(f"{url}: downloaded file fails its {checksum[0]} check")
            continue
        part.replace(dest)
        return dest
    if isinstance(last_error, ChecksumError):
        raise last_error
    raise DataUnavailable(
        f"could not download {url} after {retries + 1} attempts ({last_error}). "
        f"Without network access use a local mirror: {HOW_TO}"
    ) from last_error


def _download(url: str, part: Path, timeout: float, desc: str) -> None:
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if offset and response.status != 206:  # server ignored the range: start over
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with (
            open(part, "ab" if offset else "wb") as fh,
            closing(progress(total, desc, initial=offset, unit="B")) as bar,
        ):
            while block := response.read(1 << 16):
                fh.write(block)
                bar.update(len(block))
        if total is not None and part.stat().st_size < total:
            raise http.client.IncompleteRead(b"", total - part.stat().st_size)


def fetch_json(url: str, dest: Path, **kwargs: Any) -> Any:
    """Fetch a JSON document to a cache file (digest kept beside it) and parse it.

    A cached document that no longer matches its recorded digest or no longer parses is
    considered corrupt and fetched again.
    """
    dest = Path(dest)
    sidecar = dest.with_name(dest.name + ".sha256")
    if dest.exists() and sidecar.exists():
        try:
            if file_digest(dest, "sha256") == sidecar.read_text().strip():
                return json.loads(dest.read_text())
        except json.JSONDecodeError:
            pass
        log.warning("cached %s is corrupt; fetching it again", dest)
    for stale in (dest, sidecar):
        stale.unlink(missing_ok=True)
    fetch(url, dest, **kwargs)
    try:
        data = json.loads(dest.read_text())
    except json.JSONDecodeError as exc:
        dest.unlink()
        raise DataUnavailable(f"{url} did not return JSON ({exc})") from exc
    sidecar.write_text(file_digest(dest, "sha256"))
    return data
