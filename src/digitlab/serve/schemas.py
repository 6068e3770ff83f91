"""The JSON shapes of the REST API; FastAPI turns them into /openapi.json."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Pixel = Annotated[int, Field(ge=0, le=255)]
PixelRow = Annotated[list[Pixel], Field(min_length=28, max_length=28)]

IS_DIGIT = (
    "Whether the image looks like a digit: its digit_score reaches not_digit_threshold. "
    "When false, digit is still the best guess."
)
DIGIT_SCORE = (
    "How digit-like the image is, 0..1 (higher: more). A model that knows non-digits computes "
    "it with a head of its own; for any other model it is the top probability."
)
THRESHOLD = "The digit score below which an image is not a digit (the request's or the server's)."


class PredictionResponse(BaseModel):
    """The model's answer for one image."""

    digit: int = Field(ge=0, description="The predicted class (the digit 0..9 for MNIST models).")
    confidence: Probability = Field(description="The probability of the predicted class.")
    probabilities: list[Probability] = Field(
        description="The probability of each class, indexed by class (10 for digits)."
    )
    is_digit: bool = Field(description=IS_DIGIT)
    digit_score: Probability = Field(description=DIGIT_SCORE)
    not_digit_threshold: Probability = Field(description=THRESHOLD)
    model: str = Field(description="The name of the model that answered.")
    preprocessed: Annotated[list[PixelRow], Field(min_length=28, max_length=28)] = Field(
        description="The 28x28 grayscale image the model saw (0 = background, 255 = ink)."
    )


class HealthResponse(BaseModel):
    """The server is up and its model is loaded."""

    status: Literal["ok"]
    model: str = Field(description="The name of the model that answers /predict.")


class ErrorResponse(BaseModel):
    """Every error answer: one sentence saying what was wrong."""

    detail: str


class DigitResponse(BaseModel):
    """One digit of a number read from an image."""

    digit: int = Field(ge=0, description="The predicted class (the digit 0..9 for MNIST models).")
    confidence: Probability = Field(description="The probability of the predicted class.")
    box: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=4, max_length=4)] = Field(
        description="The digit's ink box [x0, y0, x1, y1] in the image's pixels (x1 and y1 "
        "exclusive), from its top-left corner."
    )
    probabilities: list[Probability] = Field(
        description="The probability of each class for this digit, indexed by class."
    )
    is_digit: bool = Field(description=IS_DIGIT)
    digit_score: Probability = Field(description=DIGIT_SCORE)
    preprocessed: Annotated[list[PixelRow], Field(min_length=28, max_length=28)] = Field(
        description="The 28x28 grayscale image of this digit the model saw."
    )


class ReadingResponse(BaseModel):
    """The number read from one image, its digits left to right."""

    number: str = Field(description="The digits read, left to right (one digit: as /predict).")
    confidence: Probability = Field(
        description="The chance that every digit is right: the product of their confidences."
    )
    digits: list[DigitResponse] = Field(min_length=1, description="Each digit, left to right.")
    width: int = Field(ge=1, description="The image's width in pixels, which boxes refer to.")
    height: int = Field(ge=1, description="The image's height in pixels.")
    not_digit_threshold: Probability = Field(description=THRESHOLD)
    model: str = Field(description="The name of the model that answered.")
