"""Driving the draw-a-digit page in a real headless Chromium: strokes by mouse, pen and
touch, and reading back what the page shows. Shared by the browser tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from playwright.sync_api import Browser, Page

from digit_images import Stroke, ink_strokes

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def open_page(browser: Browser, url: str, **context_options: Any) -> Iterator[Page]:
    """The page at `url`, once it has its model's name, in a context of its own: a desktop
    window unless `context_options` (`Browser.new_context`'s) say otherwise."""
    # Reduced motion turns off the bars' animation, so a screenshot shows their final widths.
    options = {
        "viewport": {"width": 1100, "height": 860},
        "device_scale_factor": 2,
        "reduced_motion": "reduce",
        **context_options,
    }
    context = browser.new_context(**options)
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("!document.getElementById('model-name').textContent.includes('loading')")
    yield page
    context.close()


def page_points(page: Page, stroke: Stroke) -> list[tuple[float, float]]:
    """A stroke mapped onto the canvas, with a point about every two MNIST pixels."""
    box = page.get_by_test_id("canvas").bounding_box()
    assert box is not None
    scale = box["width"] / 28
    points = [stroke[0]]
    for (x0, y0), (x1, y1) in zip(stroke, stroke[1:], strict=False):
        steps = max(1, round(max(abs(x1 - x0), abs(y1 - y0)) / 2))
        points += [
            (x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps) for k in range(1, steps + 1)
        ]
    return [(box["x"] + x * scale, box["y"] + y * scale) for x, y in points]


def mouse_stroke(page: Page, points: list[tuple[float, float]]) -> None:
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*point)
    page.mouse.up()


def pen_stroke(page: Page, points: list[tuple[float, float]]) -> None:
    cdp = page.context.new_cdp_session(page)
    pressed = {"button": "left", "buttons": 1, "pointerType": "pen", "force": 0.5}
    cdp.send(
        "Input.dispatchMouseEvent",
        {"type": "mouseMoved", "x": points[0][0], "y": points[0][1], "pointerType": "pen"},
    )
    cdp.send(
        "Input.dispatchMouseEvent",
        {"type": "mousePressed", "x": points[0][0], "y": points[0][1], "clickCount": 1, **pressed},
    )
    for x, y in points[1:]:
        cdp.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y, **pressed})
    x, y = points[-1]
    cdp.send(
        "Input.dispatchMouseEvent",
        {
            "type": "mouseReleased",
            "x": x,
            "y": y,
            "clickCount": 1,
            "button": "left",
            "buttons": 0,
            "pointerType": "pen",
        },
    )
    cdp.detach()


def touch_stroke(page: Page, points: list[tuple[float, float]]) -> None:
    cdp = page.context.new_cdp_session(page)
    x, y = points[0]
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    for x, y in points[1:]:
        cdp.send(
            "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]}
        )
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def wait_until_idle(page: Page) -> None:
    page.wait_for_function(
        "document.getElementById('result').getAttribute('aria-busy') === 'false'"
    )


def draw(page: Page, digit: np.ndarray | list[Stroke], stroke_with=mouse_stroke) -> tuple[str, int]:
    """Draw a digit (an MNIST image's traced ink, or strokes); return the shown prediction
    and the ms from the last release to that prediction (as the page measured it)."""
    strokes = ink_strokes(digit) if isinstance(digit, np.ndarray) else digit
    for stroke in strokes[:-1]:
        stroke_with(page, page_points(page, stroke))
    wait_until_idle(page)
    prediction = page.get_by_test_id("prediction")
    prediction.evaluate("element => delete element.dataset.releaseMs")
    stroke_with(page, page_points(page, strokes[-1]))
    page.wait_for_function(
        "document.querySelector('[data-testid=prediction]').dataset.releaseMs !== undefined"
    )
    wait_until_idle(page)
    return prediction.text_content(), int(prediction.get_attribute("data-release-ms"))


def canvas_is_blank(page: Page) -> bool:
    return page.get_by_test_id("canvas").evaluate(
        """canvas => canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height)
                          .data.every(value => value === 255)"""
    )


def shown_preprocessed(page: Page) -> np.ndarray:
    """The 28x28 gray image the page shows as what the model saw."""
    rgba = page.get_by_test_id("preprocessed").evaluate(
        "canvas => Array.from(canvas.getContext('2d').getImageData(0, 0, 28, 28).data)"
    )
    return np.array(rgba, dtype=np.uint8).reshape(28, 28, 4)[:, :, 0]
