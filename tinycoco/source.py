"""Reading a COCO128 source: the official URL, a local zip, or a local folder.

This is the I/O edge of the builder. The whole source is read into memory
(COCO128 is about 7 MB zipped, 22 MB unpacked): the rest of the build is
then pure functions of bytes.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from tinycoco.errors import DatasetError
from tinycoco.layout import Layout, locate_layout

DEFAULT_SOURCE_URL = "https://github.com/ultralytics/assets/releases/download/v0.0.0/coco128.zip"
SOURCE_ENV = "TP4_COCO128_SOURCE"  # overrides the default source (offline machines, CI)
DOWNLOAD_TIMEOUT_S = 60.0
MAX_DOWNLOAD_BYTES = 256 * 2**20
_CHUNK_BYTES = 2**20
_USER_AGENT = "tp4-tinycoco/1"
_OFFLINE_HINT = f"offline? pass --source <local coco128.zip or folder> or set {SOURCE_ENV}"


@dataclass(frozen=True)
class SourceFiles:
    """Every COCO128 layout file of a source, read into memory."""

    where: str  # the source as given: URL or path
    archive_sha256: str | None  # sha256 of the zip's bytes; None for a folder
    layout: Layout
    contents: Mapping[str, bytes]  # name inside the source -> bytes

    @cached_property
    def content_sha256(self) -> str:
        """A checksum of the data itself, the same for the zip and its unpacked folder.

        sha256 over the sorted lines `<path under the root>\\0<sha256 of file>\\n`.
        """
        prefix = f"{self.layout.root}/" if self.layout.root else ""
        digest = hashlib.sha256()
        for name in sorted(self.contents, key=lambda n: n.removeprefix(prefix)):
            file_sha = hashlib.sha256(self.contents[name]).hexdigest()
            digest.update(f"{name.removeprefix(prefix)}\0{file_sha}\n".encode())
        return digest.hexdigest()


def default_source() -> str:
    """The source used when none is given: $TP4_COCO128_SOURCE, else the official URL."""
    return os.environ.get(SOURCE_ENV) or DEFAULT_SOURCE_URL


def is_url(source: str) -> bool:
    return "://" in source


def read_source(*, source: str, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> SourceFiles:
    """Read a COCO128 source: an http(s) URL of a zip, a local zip, or a local folder."""
    if is_url(source):
        data = download(url=source, timeout_s=timeout_s)
        return _read_zip(data=data, where=source)
    path = Path(source).expanduser()
    if not path.exists():
        raise DatasetError(f"source not found: {path}")
    if path.is_dir():
        return _read_folder(folder=path)
    return _read_zip(data=_read_file(path=path), where=str(path))


def download(*, url: str, timeout_s: float, max_bytes: int = MAX_DOWNLOAD_BYTES) -> bytes:
    """GET a URL into memory; DatasetError naming the URL on any failure."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise DatasetError(f"unsupported source URL {url!r}: only http:// and https:// are downloaded")
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            data = _read_body(response=response, url=url, max_bytes=max_bytes)
    except urllib.error.HTTPError as error:
        raise DatasetError(f"cannot download {url}: HTTP {error.code} {error.reason}") from error
    except urllib.error.URLError as error:
        raise DatasetError(f"cannot download {url}: {error.reason}; {_OFFLINE_HINT}") from error
    except (OSError, http.client.HTTPException) as error:  # timeouts, resets, broken responses
        raise DatasetError(f"cannot download {url}: {error!r}; {_OFFLINE_HINT}") from error
    return data


def _read_body(*, response: http.client.HTTPResponse, url: str, max_bytes: int) -> bytes:
    buffer = io.BytesIO()
    while chunk := response.read(_CHUNK_BYTES):
        buffer.write(chunk)
        if buffer.tell() > max_bytes:
            raise DatasetError(f"cannot download {url}: larger than {max_bytes} bytes")
    expected = response.headers.get("Content-Length")
    if expected is not None and expected.isdigit() and int(expected) != buffer.tell():
        raise DatasetError(f"cannot download {url}: got {buffer.tell()} of {expected} bytes")
    return buffer.getvalue()


def _read_zip(*, data: bytes, where: str) -> SourceFiles:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as error:
        raise DatasetError(f"{where}: not a readable zip archive ({error})") from error
    with archive:
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
        layout = locate_layout(names=names, where=where)
        contents = {name: _read_member(archive=archive, name=name, where=where) for name in _layout_names(layout)}
    return SourceFiles(
        where=where, archive_sha256=hashlib.sha256(data).hexdigest(), layout=layout, contents=contents
    )


def _read_member(*, archive: zipfile.ZipFile, name: str, where: str) -> bytes:
    # Members are read, never extracted: output names are built from image ids,
    # so a hostile member name ("../x") cannot write outside the output.
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as error:
        raise DatasetError(f"{where}: corrupt or unreadable member {name} ({error})") from error


def _read_folder(*, folder: Path) -> SourceFiles:
    names = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    layout = locate_layout(names=names, where=str(folder))
    contents = {name: _read_file(path=folder / name) for name in _layout_names(layout)}
    return SourceFiles(where=str(folder), archive_sha256=None, layout=layout, contents=contents)


def _read_file(*, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error.strerror or error}") from error


def _layout_names(layout: Layout) -> list[str]:
    return sorted([*layout.images.values(), *layout.labels.values()])
