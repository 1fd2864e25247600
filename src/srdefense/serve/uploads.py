"""Reading an uploaded image from a request: size-limited, in memory, multipart or raw body.

Why this is not ``fastapi.UploadFile``: Starlette spools every multipart file larger than
1 MiB to a temporary file on disk, and reads the whole body before any limit applies; the
service must write nothing to disk and refuse an oversized body as soon as it passes the
limit. So the body is streamed here, counted, and fed chunk by chunk to python-multipart's
parser (the same parser Starlette uses), which keeps the one wanted part in memory.
"""

from __future__ import annotations

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from .errors import ServiceError

#: the multipart field that carries the image (``curl -F image=@photo.jpg``)
FIELD = "image"


def _too_large(limit: int) -> ServiceError:
    return ServiceError(
        413,
        "too_large",
        f"request body exceeds the server's limit of {limit / (1024 * 1024):g} MiB (--max-upload-mb)",
    )


class _OnePart:
    """Callbacks for :class:`MultipartParser` that keep the bytes of the field ``FIELD``."""

    def __init__(self) -> None:
        self.fields: list[str] = []
        self.data: bytearray | None = None
        self._field = b""
        self._value = b""
        self._name: str | None = None
        self._chunks: bytearray | None = None

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._name, self._chunks = None, None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._field.lower() == b"content-disposition":
            _, opts = parse_options_header(self._value)
            raw = opts.get(b"name")
            self._name = raw.decode("utf-8", "replace") if raw is not None else ""
            self.fields.append(self._name)
            if self._name == FIELD and self.data is None:
                self._chunks = bytearray()
        self._field, self._value = b"", b""

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._chunks is not None:
            self._chunks += data[start:end]

    def _part_end(self) -> None:
        if self._chunks is not None:
            self.data = self._chunks
            self._chunks = None


async def read_image_bytes(request: Request, max_bytes: int) -> bytes:
    """The uploaded image's bytes: the ``image`` field of a multipart form, or the raw body.

    Args:
        request: the incoming request.
        max_bytes: largest body accepted.

    Returns:
        The encoded image file.

    Raises:
        ServiceError: 413 when the body exceeds ``max_bytes`` (from ``Content-Length`` or
            while streaming); 422 for a malformed form, a form without the ``image`` field or
            an empty body.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    ctype, opts = parse_options_header(request.headers.get("content-type", ""))
    if ctype == b"multipart/form-data":
        boundary = opts.get(b"boundary")
        if not boundary:
            raise ServiceError(422, "bad_form", "multipart/form-data body without a boundary")
        part = _OnePart()
        parser = MultipartParser(boundary, part.callbacks())  # type: ignore[arg-type]
        seen = 0
        try:
            async for chunk in request.stream():
                seen += len(chunk)
                if seen > max_bytes:
                    raise _too_large(max_bytes)
                parser.write(chunk)
            parser.finalize()
        except ServiceError:
            raise
        except Exception as exc:  # python-multipart raises its own error types
            raise ServiceError(422, "bad_form", f"malformed multipart/form-data body: {exc}") from None
        if part.data is None:
            got = ", ".join(repr(f) for f in part.fields) or "no fields"
            raise ServiceError(
                422,
                "missing_image",
                f"expected the image in the form field {FIELD!r} (curl -F {FIELD}=@photo.jpg), got {got}",
            )
        data = bytes(part.data)
    elif ctype == b"application/x-www-form-urlencoded":
        raise ServiceError(
            415,
            "unsupported_media_type",
            "a url-encoded form cannot carry an image: send multipart/form-data with the field "
            f"{FIELD!r}, or the image file as the raw body",
        )
    else:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise _too_large(max_bytes)
        data = bytes(body)
    if not data:
        raise ServiceError(
            422,
            "missing_image",
            f"the request carries no image: send multipart/form-data with the field {FIELD!r} "
            "or the image file as the raw body",
        )
    return data
