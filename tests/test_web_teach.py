"""Teaching from the page, in a real headless Chromium against a real `digitlab serve` of
two worker processes (`teachable_server`, conftest.py): a correction is kept only when the
person presses "Right" or "It was: N"; "Teach the model" appears once there are enough
samples, shows its progress, and then every answer, from either worker, comes from the
taught model, which the page says.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from digit_images import paper_png
from digitlab.serve.teaching import MIN_SAMPLES_PER_DIGIT
from web_pages import draw, open_page, shown_preprocessed

pytestmark = pytest.mark.slow

# Seconds the one-epoch fine-tune of the tiny model may take on a busy machine.
TEACH_TIMEOUT_S = 240


@pytest.fixture
def teach_page(
    browser: Browser,
    teachable_server: tuple[str, Path],
) -> Iterator[Page]:
    yield from open_page(browser, teachable_server[0])


def stored_count(url: str) -> list[int]:
    counts: list[int] = httpx.get(f"{url}/samples").json()["counts"]
    return counts


def shown_counts(page: Page) -> list[int]:
    items = page.get_by_test_id("sample-counts").locator("li .count-value")
    return [int(text) for text in items.all_text_contents()]


def test_a_correction_is_kept_only_when_chosen_and_can_be_undone(
    teach_page: Page, teachable_server: tuple[str, Path], mnist
):
    url, samples_dir = teachable_server
    _, (x_test, y_test) = mnist
    before = stored_count(url)
    expect(teach_page.get_by_test_id("sample-counts").locator("li")).to_have_count(10)
    assert shown_counts(teach_page) == before

    draw(teach_page, x_test[0])
    draw(teach_page, x_test[1])
    assert stored_count(url) == before, "an answer alone must keep nothing"

    label = int(y_test[1])
    choice = teach_page.locator(f"[data-testid=it-was-digit][data-digit='{label}']")
    choice.focus()
    teach_page.keyboard.press("Enter")
    expect(teach_page.get_by_test_id("sample-note")).to_have_text(f"Kept as a sample of {label}.")
    after = stored_count(url)
    assert after[label] == before[label] + 1 and sum(after) == sum(before) + 1
    expect(
        teach_page.get_by_test_id("sample-counts").locator("li .count-value").nth(label)
    ).to_have_text(str(after[label]))
    # What was kept is the digit the page showed as what the model saw (normalised again
    # by the server, which moves a few pixels by a few levels).
    newest = max(samples_dir.glob(f"{label}/*.png"), key=lambda path: path.stat().st_mtime_ns)
    kept = np.asarray(Image.open(newest)).astype(int)
    assert np.abs(kept - shown_preprocessed(teach_page)).mean() < 3
    # Once per answer: the controls wait for the next one.
    expect(teach_page.get_by_test_id("right")).to_be_disabled()
    expect(teach_page.get_by_test_id("teach-button")).to_be_hidden()

    teach_page.get_by_test_id("undo").click()
    expect(teach_page.get_by_test_id("sample-note")).to_have_text(f"Removed the sample of {label}.")
    assert stored_count(url) == before
    assert not newest.exists()


def test_teaching_from_the_page_swaps_every_worker_to_the_taught_model(
    teach_page: Page, teachable_server: tuple[str, Path], mnist, server_workers: int
):
    url, _ = teachable_server
    _, (x_test, y_test) = mnist
    with httpx.Client(base_url=url, timeout=30) as http:
        # One 3 short of enough: the page's correction makes it up.
        for digit, count in ((3, MIN_SAMPLES_PER_DIGIT - 1), (5, MIN_SAMPLES_PER_DIGIT)):
            for index in np.flatnonzero(y_test == digit)[:count]:
                answer = http.post(
                    "/samples",
                    params={"label": digit},
                    content=paper_png(x_test[index]),
                    headers={"Content-Type": "image/png"},
                )
                assert answer.status_code == 201
        base_model = http.get("/health").json()["model"]
        assert "taught" not in base_model

        teach_page.reload()
        teach_button = teach_page.get_by_test_id("teach-button")
        expect(teach_page.get_by_test_id("samples-summary")).to_contain_text("needs")
        expect(teach_button).to_be_hidden()
        draw(teach_page, x_test[np.flatnonzero(y_test == 3)[MIN_SAMPLES_PER_DIGIT]])
        teach_page.locator("[data-testid=it-was-digit][data-digit='3']").click()
        expect(teach_page.get_by_test_id("sample-note")).to_have_text("Kept as a sample of 3.")
        total = sum(stored_count(url))
        expect(teach_button).to_be_visible()
        teach_button.click()
        expect(teach_page.get_by_test_id("teach-bar")).to_be_visible()
        expect(teach_page.get_by_test_id("teach-stage")).to_contain_text("%")
        assert http.post("/finetune").status_code == 409, "a second job must wait"

        result = teach_page.get_by_test_id("teach-result")
        expect(result).to_contain_text(
            "now answers with the taught model", timeout=TEACH_TIMEOUT_S * 1000
        )
        taught_name = f"{base_model}, taught from {total} samples"
        expect(result).to_contain_text(f"Taught from {total} samples")
        expect(teach_page.locator("#model-name")).to_have_text(f"model: {taught_name}")
        status = http.get("/finetune").json()
        assert status["state"] == "done" and status["model"] == taught_name
        assert 0 <= status["after"]["mnist"] <= 1

        # Every later answer, from whichever worker, comes from the taught model.
        for _ in range(4 * server_workers):
            assert http.get("/health").json()["model"] == taught_name
            answer = http.post(
                "/predict", content=paper_png(x_test[2]), headers={"Content-Type": "image/png"}
            )
            assert answer.json()["model"] == taught_name
        teach_page.get_by_test_id("clear").click()
        draw(teach_page, x_test[3])
        expect(teach_page.locator("#model-name")).to_have_text(f"model: {taught_name}")
