"""Reading ``POST /api/predict`` bodies: multipart/form-data parsed while it streams in, into memory.

The limits hold while the body is read, so a client cannot make the server buffer more than it allows:
a ``Content-Length`` over ``max_body`` is refused before any of the body is read, a chunked body as
soon as it passes ``max_body``, and a request with more than ``max_files`` files at the header of the
file one too many; each gets 413 at once. A body that has not arrived whole within the upload timeout
gets 408, so a stalled or trickling uploader (slowloris) cannot hold a queue place for ever. A file
over ``max_file`` bytes is not kept (its bytes are dropped as they arrive) and gets a per-file error,
as an unreadable image does. Nothing touches the disk: the memory held per request is at most
``max_body`` bytes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath

import anyio
from fastapi import HTTPException, Request
from python_multipart.multipart import MultipartParser, parse_options_header

FILES_FIELD = "files"
MAX_FIELDS = 16  # non-file parts (the page sends one: label_set)
MAX_FIELD_BYTES = 4096


@dataclass
class UploadedFile:
    """One uploaded file: its base name, and its bytes unless it was over the per-file limit."""

    name: str
    size: int = 0
    data: bytearray | None = field(default_factory=bytearray)


@dataclass
class Upload:
    files: list[UploadedFile] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


def _too_large(detail: str) -> HTTPException:
    return HTTPException(413, detail)


class _Collector:
    """The parser's callbacks: headers → the part's name and file name, data → bounded buffers."""

    def __init__(self, max_files: int, max_file: int):
        self.max_files, self.max_file = max_files, max_file
        self.upload = Upload()
        self._headers: dict[bytes, bytes] = {}
        self._field, self._value = b"", b""
        self._file: UploadedFile | None = None
        self._name: str | None = None
        self._text: bytearray | None = None
        self._n_fields = 0
        self.ended = False

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._add("_field", d[s:e]),
            "on_header_value": lambda d, s, e: self._add("_value", d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _add(self, attr: str, chunk: bytes) -> None:
        setattr(self, attr, getattr(self, attr) + chunk)

    def _part_begin(self) -> None:
        self._headers, self._file, self._name, self._text = {}, None, None, None

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, opts = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = opts.get(b"name", b"").decode("utf-8", "replace")
        if name == FILES_FIELD:
            if len(self.upload.files) == self.max_files:
                raise _too_large(
                    f"too many files (over {self.max_files}); at most {self.max_files} per request"
                )
            # the name is only shown back to the client, never used as a path
            base = PurePath(opts.get(b"filename", b"").decode("utf-8", "replace").replace("\\", "/")).name
            self._file = UploadedFile(name=base or "upload")
            self.upload.files.append(self._file)
        else:
            self._n_fields += 1
            if self._n_fields > MAX_FIELDS:
                raise _too_large(f"too many form fields (over {MAX_FIELDS})")
            self._name, self._text = name, bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        f = self._file
        if f is not None:
            f.size += end - start
            if f.data is not None:
                if f.size > self.max_file:
                    f.data = None  # over the per-file limit: reported per file, its bytes not kept
                else:
                    f.data += data[start:end]
        elif self._text is not None:
            self._text += data[start:end]
            if len(self._text) > MAX_FIELD_BYTES:
                raise _too_large(f"form field {self._name!r} is over {MAX_FIELD_BYTES} bytes")

    def _end(self) -> None:
        self.ended = True

    def _part_end(self) -> None:
        if self._text is not None and self._name:
            self.upload.fields[self._name] = self._text.decode("utf-8", "replace")
        self._file, self._text = None, None


async def read_upload(
    request: Request, *, max_files: int, max_file: int, max_body: int, timeout: float | None = None
) -> Upload:
    """Parse a multipart/form-data body within the limits (bytes) and ``timeout`` (seconds for the whole
    body, 408 when it passes: a client that stalls mid-upload would otherwise hold its place in the
    server's queue forever); HTTP errors as described above."""
    try:
        with anyio.fail_after(timeout):
            return await _read_upload(request, max_files=max_files, max_file=max_file, max_body=max_body)
    except TimeoutError:
        raise HTTPException(
            408,
            f"the upload did not arrive within {timeout:g} s; send it again",
            headers={"Connection": "close"},
        ) from None


async def _read_upload(request: Request, *, max_files: int, max_file: int, max_body: int) -> Upload:
    ctype, opts = parse_options_header(request.headers.get("content-type"))
    if ctype != b"multipart/form-data" or not opts.get(b"boundary"):
        raise HTTPException(422, f"expected a multipart/form-data body with '{FILES_FIELD}'")
    mb = max_body / (1024 * 1024)
    over = f"upload larger than {mb:g} MB; at most {mb:g} MB per request"
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_body:
        raise _too_large(over)
    collector = _Collector(max_files, max_file)
    parser = MultipartParser(opts[b"boundary"], collector.callbacks())  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_body:
                raise _too_large(over)
            parser.write(chunk)
        parser.finalize()
        if not collector.ended:
            raise ValueError("no closing boundary")
    except HTTPException:
        raise
    except Exception as e:  # python_multipart's parse errors (a malformed or truncated body)
        raise HTTPException(400, f"malformed or truncated multipart body ({e})") from None
    if not collector.upload.files:
        raise HTTPException(422, f"no files in the upload (multipart field '{FILES_FIELD}')")
    return collector.upload
