"""What the image routes share in the OpenAPI description: the request body, the
not-digit threshold parameter and the error answers."""

from __future__ import annotations

from typing import Any

from PIL import Image

from digitlab.images import SUPPORTED_FORMATS
from digitlab.inference.digit_score import DEFAULT_NOT_DIGIT_THRESHOLD
from digitlab.serve.schemas import ErrorResponse
from digitlab.serve.uploads import MAX_BODY_BYTES, MAX_IMAGE_MEMORY

#: The query parameter by which a request chooses its own not-digit threshold.
THRESHOLD_PARAMETER = "not_digit_threshold"

# Pillow fills `Image.MIME` as it loads its format plugins: load them all first.
Image.init()
_IMAGE_TYPES = tuple(Image.MIME[image_format] for image_format in SUPPORTED_FORMATS)
_FORMAT_NAMES = f"{', '.join(SUPPORTED_FORMATS[:-1])} or {SUPPORTED_FORMATS[-1]}"

#: The request body of every image route: multipart or a raw image.
IMAGE_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": (
        f"An image ({_FORMAT_NAMES}; any size; dark ink on light paper or light on dark), "
        "either as the multipart form field `file` or as the raw body with an `image/*` "
        f"content type. At most {MAX_BODY_BYTES:,} bytes."
    ),
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
        **{
            media_type: {"schema": {"type": "string", "format": "binary"}}
            for media_type in _IMAGE_TYPES
        },
    },
}


_BAD_IMAGE = "The image is empty, corrupt or truncated, or blank (no ink at all)"


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    reasons = {
        400: "The multipart body is malformed.",
        413: (
            f"The body is over {MAX_BODY_BYTES:,} bytes, or the image would take more than "
            f"{MAX_IMAGE_MEMORY:,} bytes of memory to decode."
        ),
        415: "The body is not an image, or the content type is neither multipart nor image/*.",
        422: f"{_BAD_IMAGE}.",
        503: "The model is not loaded yet, or the server is busy with large or slow images.",
    }
    return {code: {"model": ErrorResponse, "description": reasons[code]} for code in codes}


_THRESHOLD_QUERY: dict[str, Any] = {
    "name": THRESHOLD_PARAMETER,
    "in": "query",
    "required": False,
    "description": (
        "The digit score (0..1) below which the image, or a part of a number, is not a "
        "digit; its best guess is still given (default: the server's, "
        f"{DEFAULT_NOT_DIGIT_THRESHOLD} unless `digitlab serve --not-digit-threshold` set "
        "another). Outside 0..1 or not a number: 422."
    ),
    "schema": {"type": "number", "minimum": 0, "maximum": 1},
}

# What /predict and /read share in the OpenAPI description: the body, the threshold and
# the errors.
IMAGE_ROUTE: dict[str, Any] = {
    "openapi_extra": {"requestBody": IMAGE_REQUEST_BODY, "parameters": [_THRESHOLD_QUERY]},
    "responses": {
        **error_responses(400, 413, 415, 422, 503),
        422: {
            "model": ErrorResponse,
            "description": (
                f"{_BAD_IMAGE}, or {THRESHOLD_PARAMETER} is not a number between 0 and 1."
            ),
        },
    },
}
