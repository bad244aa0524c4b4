"""A ``POST /predict`` body -> the pipeline's input, with every check a bad request can fail (status and kind).

The body is the image's bytes (``Content-Type`` ``image/png``, ``image/jpeg``, ``image/bmp``, ``image/tiff`` or
``application/octet-stream``) or ``multipart/form-data`` with the image in the file field ``image`` (and an optional
field ``heatmaps``). In order: the content type (415), the size from ``Content-Length`` and then while the body
streams in (413 over ``max_bytes``, never read past it), the image's header (400 when it names no PNG, JPEG, BMP or
TIFF image; 413 over ``max_pixels``, before a pixel is decoded: a decompression bomb stops here), then the one
decoding and resizing that ``predict`` uses (``mtfcdd.data.dataset.decode_image``,
``mtfcdd.data.images.network_input``; 400 with the decoder's reason).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import PurePosixPath

import albumentations as A
import torch
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from mtfcdd.data.dataset import decode_image
from mtfcdd.data.images import network_input
from mtfcdd.data.realiad import RealIADFormatError

RAW_TYPES = ("image/png", "image/jpeg", "image/bmp", "image/tiff", "application/octet-stream")
"""Content types of a body that is the image itself."""
FORM_TYPE = "multipart/form-data"
FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "BMP": "BMP", "DIB": "BMP", "TIFF": "TIFF"}
"""Pillow's names of the image formats accepted (as read from the header) -> the format."""
RAW_NAME = "request"
"""The ``path`` of an image sent as the raw body (a multipart upload keeps its file name)."""
DECODER_MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS
"""Pixels (width x height) above which Pillow refuses an image's header as a decompression bomb, whatever
``serve.max_pixels`` says: the most that setting can admit (178,956,970 with Pillow's default)."""


class RequestError(Exception):
    """A request the server refuses: HTTP ``status``, the ``kind`` ``/metrics`` counts it as, and why."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


@dataclass(frozen=True)
class Upload:
    """The image of a request: its encoded bytes, its name (``path`` of the answer) and whether heatmaps are asked."""

    data: bytes
    name: str
    heatmaps: bool


def parse_flag(value: str | None, where: str) -> bool:
    """``true``/``1``/``yes``/``on`` or ``false``/``0``/``no``/``off`` (any case; None: false); else 400."""
    if value is None:
        return False
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off", ""):
        return False
    raise RequestError(400, "bad_request", f"{where}={value!r}: expected true or false")


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, refused (413) as soon as ``Content-Length`` or the bytes received pass ``max_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise RequestError(400, "bad_request", f"Content-Length {declared!r} is not a number of bytes")
        if int(declared) > max_bytes:
            raise RequestError(413, "too_large", f"the body has {int(declared)} bytes; serve.max_bytes={max_bytes}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise RequestError(413, "too_large", f"the body has more than serve.max_bytes={max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_upload(request: Request, max_bytes: int) -> Upload:
    """The image of a ``POST /predict`` (module docstring); ``heatmaps`` from the query or the form field."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    heatmaps = parse_flag(request.query_params.get("heatmaps"), "heatmaps")
    if media_type in RAW_TYPES:
        return Upload(await read_body(request, max_bytes), RAW_NAME, heatmaps)
    if media_type != FORM_TYPE:
        raise RequestError(
            415,
            "unsupported_type",
            f"Content-Type {media_type or '(none)'!r} is not supported; send the image as {', '.join(RAW_TYPES)} "
            f"or as {FORM_TYPE} with the file field 'image'",
        )
    body = await read_body(request, max_bytes)

    async def chunks():
        yield body

    try:
        form = await MultiPartParser(request.headers, chunks(), max_files=1, max_fields=4).parse()
    except MultiPartException as err:
        raise RequestError(400, "bad_request", f"unreadable {FORM_TYPE} body: {err}") from err
    image = form.get("image")
    if not isinstance(image, UploadFile):
        raise RequestError(400, "bad_request", f"the {FORM_TYPE} body has no file field 'image'")
    field = form.get("heatmaps")
    if field is not None:
        heatmaps = parse_flag(str(field), "heatmaps")
    name = PurePosixPath((image.filename or "").replace("\\", "/")).name or "upload"
    return Upload(await image.read(), name, heatmaps)


def check_header(data: bytes, name: str, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the image's header, without decoding pixels: 400 unless it is a PNG, JPEG, BMP or TIFF
    image, 413 over ``max_pixels``."""
    if not data:
        raise RequestError(400, "not_an_image", f"{name}: the body is empty; expected a PNG, JPEG, BMP or TIFF image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                size, kind = image.size, image.format
    except Image.DecompressionBombError as err:
        raise RequestError(413, "too_many_pixels", f"{name}: {err}") from err
    except UnidentifiedImageError as err:
        raise RequestError(400, "not_an_image", f"{name} is not an image: no PNG, JPEG, BMP or TIFF header") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise RequestError(400, "not_an_image", f"{name} has a broken image header ({err})") from err
    if kind not in FORMATS:
        raise RequestError(400, "not_an_image", f"{name} is a {kind} image; expected PNG, JPEG, BMP or TIFF")
    width, height = size
    if width * height > max_pixels:
        raise RequestError(
            413,
            "too_many_pixels",
            f"{name} has {width} x {height} = {width * height} pixels; serve.max_pixels={max_pixels}",
        )
    return width, height


def decode_upload(upload: Upload, transform: A.Compose, max_pixels: int) -> torch.Tensor:
    """The pipeline's raw input float32 [3, S, S] of ``upload``: header checks, then predict's own decoding
    (``transform``: ``mtfcdd.data.transforms.eval_transform`` at the checkpoint's image size)."""
    name = f"image {upload.name!r}"
    check_header(upload.data, name, max_pixels)
    try:
        rgb = decode_image(upload.data, name)
    except RealIADFormatError as err:
        raise RequestError(400, "not_an_image", str(err)) from err
    if rgb.shape[0] * rgb.shape[1] > max_pixels:  # the header understated its size
        raise RequestError(413, "too_many_pixels", f"{name} decodes to more than serve.max_pixels={max_pixels}")
    return network_input(rgb, transform)
