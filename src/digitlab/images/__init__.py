"""A person's digit images: decoded safely (`decoding`), then made MNIST-style (`mnist_style`).

`decoding` is the one guarded decoder every image file a user hands in goes through
(uploads, `predict`, class-folder trees, `explore`'s size scan): supported formats, pixel,
memory and JPEG-scan limits, one family of errors. `mnist_style` turns decoded pixels into
a 28x28 MNIST-style array (`to_mnist`), subtracting the paper's level that `paper` fits.
The names below are what other modules import.
"""

from digitlab.images.decoding import (
    MAX_PIXELS,
    SUPPORTED_FORMATS,
    WORKING_SIDE,
    ImageHeader,
    ImageSource,
    decode,
    decode_file,
    memory_needed,
    read_header,
)
from digitlab.images.jpeg_scans import MAX_JPEG_SCANS
from digitlab.images.mnist_style import (
    BOX_SIDE,
    FIELD_SIDE,
    FLOOR_SHARE,
    MIN_CONTRAST,
    MIN_INK_PIXELS,
    SPECK_FRACTION,
    STROKE_SHARE,
    Ink,
    center_by_mass,
    composite_alpha,
    crop_to_ink,
    extract_ink,
    find_ink,
    ink_is_dark,
    normalize_digit,
    remove_specks,
    scale_to_box,
    shrink,
    thicken_thin_strokes,
    to_grayscale,
    to_mnist,
    to_uint8,
)
from digitlab.images.paper import paper_level
from digitlab.images.strokes import stroke_width

__all__ = [
    "BOX_SIDE",
    "FIELD_SIDE",
    "FLOOR_SHARE",
    "MAX_JPEG_SCANS",
    "MAX_PIXELS",
    "MIN_CONTRAST",
    "MIN_INK_PIXELS",
    "SPECK_FRACTION",
    "STROKE_SHARE",
    "SUPPORTED_FORMATS",
    "WORKING_SIDE",
    "ImageHeader",
    "ImageSource",
    "Ink",
    "center_by_mass",
    "composite_alpha",
    "crop_to_ink",
    "decode",
    "decode_file",
    "extract_ink",
    "find_ink",
    "ink_is_dark",
    "memory_needed",
    "normalize_digit",
    "paper_level",
    "read_header",
    "remove_specks",
    "scale_to_box",
    "shrink",
    "stroke_width",
    "thicken_thin_strokes",
    "to_grayscale",
    "to_mnist",
    "to_uint8",
]
