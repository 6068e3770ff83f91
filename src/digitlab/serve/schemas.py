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
    text: str = Field(
        description="The number as written: its digits with the points, commas and dashes "
        'written between them ("12.50" where number is "1250").'
    )
    confidence: Probability = Field(
        description="The chance that every digit is right: the product of their confidences."
    )
    digits: list[DigitResponse] = Field(min_length=1, description="Each digit, left to right.")
    width: int = Field(ge=1, description="The image's width in pixels, which boxes refer to.")
    height: int = Field(ge=1, description="The image's height in pixels.")
    not_digit_threshold: Probability = Field(description=THRESHOLD)
    model: str = Field(description="The name of the model that answered.")


class SampleCreated(BaseModel):
    """A sample stored, and the id the server made for it."""

    id: str = Field(description="The sample's id, for DELETE /samples/{id}.")
    label: int = Field(ge=0, le=9, description="The digit it was stored as.")


class SampleCounts(BaseModel):
    """The samples stored, per digit, and whether there are enough to teach the model."""

    counts: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=10, max_length=10)] = (
        Field(description="How many samples each digit 0..9 has, indexed by digit.")
    )
    total: int = Field(ge=0, description="How many samples are stored.")
    max_samples: int = Field(ge=1, description="The most samples the store holds.")
    min_per_digit: int = Field(
        ge=1, description="Samples each digit that has any needs before teaching can start."
    )
    ready: bool = Field(description="Whether POST /finetune would start teaching now.")


class FinetuneScores(BaseModel):
    """A model's accuracies, before or after teaching."""

    person: Probability | None = Field(
        description="Accuracy on the held-out part of the samples (null: too few to hold any out)."
    )
    mnist: Probability = Field(description="Accuracy on the MNIST test set.")


class FinetuneStatus(BaseModel):
    """Where teaching the model stands: idle (never taught), running, done or failed."""

    state: Literal["idle", "running", "done", "failed"]
    job: str | None = Field(default=None, description="The job's id, made by the server.")
    samples: int | None = Field(default=None, ge=0, description="Samples it is taught from.")
    stage: str | None = Field(default=None, description="What the job is doing now.")
    epoch: int | None = Field(default=None, ge=0, description="The epoch running now.")
    epochs: int | None = Field(default=None, ge=0, description="The epochs it runs in all.")
    fraction: Probability | None = Field(default=None, description="How much of the job is done.")
    before: FinetuneScores | None = Field(default=None, description="The old model's scores.")
    after: FinetuneScores | None = Field(default=None, description="The taught model's scores.")
    model: str | None = Field(default=None, description="The taught model's name, once done.")
    seconds: float | None = Field(default=None, ge=0, description="How long the job took.")
    reason: str | None = Field(default=None, description="Why it failed, in one sentence.")
