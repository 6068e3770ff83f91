"""Reading whole numbers: one image -> ink -> pieces -> digits -> the number.

`segment` holds the geometry (blobs, joined fragments, cut paths); `number` the reading
itself (`read_number`), where the classifier settles joins and cuts.
"""

from digitlab.reading.number import DigitReading, NumberReading, read_number

__all__ = ["DigitReading", "NumberReading", "read_number"]
