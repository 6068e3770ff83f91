"""`/samples` and `/finetune`'s refusals: a person's corrections stored where the server
chooses, under /predict's body rules, within the cap, and never half written.

Unit tests use FastAPI's TestClient on the app serving the shipped model, each with a samples
folder of its own; the kill -9 test runs `digitlab serve` as a real process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digit_images import paper_png, png_bytes
from digitlab.images import to_mnist
from digitlab.serve.app import create_app
from digitlab.serve.process import free_port, server_process, wait_until_healthy
from digitlab.serve.samples import SampleStore, default_samples_dir
from digitlab.serve.teaching import MIN_SAMPLES_PER_DIGIT, TeachingSettings
from digitlab.serve.uploads import MAX_BODY_BYTES

SAMPLE_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def samples_dir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "samples"


@pytest.fixture
def client(samples_dir: Path) -> Iterator[TestClient]:
    settings = TeachingSettings(samples_dir=samples_dir, max_samples=30)
    with TestClient(create_app(teaching=settings)) as client:
        yield client


@pytest.fixture(scope="module")
def digits(mnist) -> list[tuple[bytes, int]]:
    """Real MNIST test digits drawn dark on paper, as PNG files, with their labels."""
    _, (x_test, y_test) = mnist
    return [(paper_png(x_test[i]), int(y_test[i])) for i in range(12)]


def post_sample(client: TestClient, data: bytes, label: object) -> httpx.Response:
    return client.post(
        "/samples", params={"label": label}, content=data, headers={"Content-Type": "image/png"}
    )


def files_under(folder: Path) -> list[Path]:
    """Every file below `folder`, hidden ones included, but the store's lock."""
    return sorted(path for path in folder.rglob("*") if path.is_file() and path.name != ".lock")


# ---- storing ------------------------------------------------------------------------


def test_a_sample_is_the_digit_the_model_saw_stored_under_its_label(client, samples_dir, digits):
    data, label = digits[0]
    answer = post_sample(client, data, label)
    assert answer.status_code == 201
    sample_id = answer.json()["id"]
    assert SAMPLE_ID.fullmatch(sample_id)
    assert answer.json()["label"] == label
    assert files_under(samples_dir) == [samples_dir / str(label) / f"{sample_id}.png"]
    stored = np.asarray(Image.open(samples_dir / str(label) / f"{sample_id}.png"))
    np.testing.assert_array_equal(stored, to_mnist(data))
    # A class-folder reader reads it back as the same digit.
    assert (
        np.abs(to_mnist(samples_dir / str(label) / f"{sample_id}.png").astype(int) - stored).mean()
        < 2
    )


def test_a_multipart_upload_is_stored_like_a_raw_one(client, samples_dir, digits):
    data, label = digits[1]
    answer = client.post("/samples", params={"label": label}, files={"file": ("d.png", data)})
    assert answer.status_code == 201
    assert (samples_dir / str(label) / f"{answer.json()['id']}.png").is_file()


def test_ids_and_file_names_are_made_by_the_server_never_the_client(
    client, samples_dir, digits, tmp_path
):
    data, label = digits[2]
    chosen = "0" * 32
    answers = [
        client.post(
            "/samples",
            params={"label": label, "id": chosen},
            files={"file": ("../../../escaped.png", data)},
        ),
        client.post(
            f"/samples?label={label}&id={chosen}",
            files={"file": (f"/{tmp_path}/escaped.png", data)},
        ),
    ]
    ids = [answer.json()["id"] for answer in answers]
    assert [answer.status_code for answer in answers] == [201, 201]
    assert chosen not in ids and ids[0] != ids[1]
    assert files_under(tmp_path) == sorted(samples_dir / str(label) / f"{i}.png" for i in ids)


@pytest.mark.parametrize(
    "label", ["../1", "/etc", "1/../../x", "10", "-1", "\u0663", "1.5", "", "seven", "%2e%2e"]
)
def test_a_label_that_is_not_a_digit_is_refused_and_writes_nothing(
    client, samples_dir, digits, tmp_path, label
):
    answer = post_sample(client, digits[0][0], label)
    assert answer.status_code == 422, answer.text
    assert files_under(tmp_path) == []


def test_openapi_gives_samples_the_image_body_but_not_the_threshold_it_ignores(
    client: TestClient,
):
    spec = client.get("/openapi.json").json()
    samples = spec["paths"]["/samples"]["post"]
    predict = spec["paths"]["/predict"]["post"]
    assert samples["requestBody"] == predict["requestBody"]
    assert [parameter["name"] for parameter in samples["parameters"]] == ["label"]
    assert "not_digit_threshold" not in samples["responses"]["422"]["description"]
    assert "not_digit_threshold" in predict["responses"]["422"]["description"]


def test_uploads_predict_refuses_are_refused_and_leave_no_file(client, samples_dir, digits):
    data = digits[0][0]
    refused = {
        "not an image": (b"%PDF-1.7 not an image at all", "image/png", 415),
        "truncated": (data[: len(data) // 2], "image/png", 422),
        "blank": (png_bytes(np.full((40, 40), 255, np.uint8)), "image/png", 422),
        "text body": (data, "text/plain", 415),
        "too large": (b"\x89PNG" + bytes(MAX_BODY_BYTES), "image/png", 413),
    }
    for name, (body, content_type, status) in refused.items():
        answer = client.post(
            "/samples?label=3", content=body, headers={"Content-Type": content_type}
        )
        assert answer.status_code == status, name
        assert isinstance(answer.json()["detail"], str)
    assert files_under(samples_dir.parent) == []


# ---- counting, deleting, the cap ----------------------------------------------------


def test_counts_per_digit_follow_stores_and_deletes(client, digits):
    ids = [post_sample(client, data, label).json()["id"] for data, label in digits]
    expected = np.bincount([label for _, label in digits], minlength=10).tolist()
    counts = client.get("/samples").json()
    assert counts["counts"] == expected
    assert counts["total"] == len(digits)
    assert counts["max_samples"] == 30
    assert client.delete(f"/samples/{ids[0]}").status_code == 204
    assert client.delete(f"/samples/{ids[0]}").status_code == 404
    expected[digits[0][1]] -= 1
    assert client.get("/samples").json()["counts"] == expected


@pytest.mark.parametrize("sample_id", ["..", "A" * 32, "0" * 31, "0" * 33, "%2e%2e%2f.lock"])
def test_a_malformed_id_deletes_nothing(client, samples_dir, digits, sample_id):
    post_sample(client, *digits[0])
    before = files_under(samples_dir)
    # ".." is resolved by the client to the page itself, which takes no DELETE.
    assert client.delete(f"/samples/{sample_id}").status_code in (404, 405, 422)
    assert files_under(samples_dir) == before
    assert (samples_dir / ".lock").is_file()


def test_a_full_store_refuses_with_409_and_keeps_what_it_has(tmp_path, digits):
    settings = TeachingSettings(samples_dir=tmp_path / "samples", max_samples=3)
    with TestClient(create_app(teaching=settings)) as client:
        answers = [post_sample(client, data, label) for data, label in digits[:5]]
        assert [answer.status_code for answer in answers] == [201, 201, 201, 409, 409]
        assert "cap" in answers[3].json()["detail"]
        assert client.get("/samples").json()["total"] == 3
        client.delete(f"/samples/{answers[0].json()['id']}")
        assert post_sample(client, *digits[5]).status_code == 201


def test_the_cap_holds_when_several_processes_store_at_once(tmp_path, digits):
    """The store is shared by `digitlab serve`'s worker processes: its lock makes the cap
    exact however their stores interleave."""
    root = tmp_path / "samples"
    script = (
        "import sys, numpy as np\n"
        "from digitlab.errors import SamplesFullError\n"
        "from digitlab.serve.samples import SampleStore\n"
        "store = SampleStore(sys.argv[1], max_samples=25)\n"
        "for _ in range(20):\n"
        "    try: store.add(np.zeros((28, 28), np.uint8), 4)\n"
        "    except SamplesFullError: pass\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", script, str(root)]) for _ in range(3)]
    assert [writer.wait(timeout=60) for writer in writers] == [0, 0, 0]
    assert SampleStore(root).counts()[4] == 25


def test_the_default_samples_folder_is_in_the_user_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_samples_dir() == tmp_path / "digitlab" / "samples"


# ---- teaching's refusals ------------------------------------------------------------


def test_finetune_is_idle_and_refuses_to_start_without_enough_samples(client, digits):
    assert client.get("/finetune").json()["state"] == "idle"
    refused = client.post("/finetune")
    assert refused.status_code == 409
    assert "POST /samples" in refused.json()["detail"]
    for data, label in digits[:3]:
        post_sample(client, data, label)
    refused = client.post("/finetune")
    assert refused.status_code == 409
    assert f"at least {MIN_SAMPLES_PER_DIGIT} samples of each digit" in refused.json()["detail"]
    assert f"{digits[0][1]} has 1" in refused.json()["detail"]
    assert client.get("/samples").json()["ready"] is False
    assert client.get("/finetune").json()["state"] == "idle"


def test_a_model_without_a_keras_file_cannot_be_taught(tmp_path, digits):
    from digitlab.inference.pretrained import pretrained_onnx_path

    lone_onnx = tmp_path / "lone.onnx"
    lone_onnx.write_bytes(pretrained_onnx_path().read_bytes())
    settings = TeachingSettings(samples_dir=tmp_path / "samples")
    with TestClient(create_app(lone_onnx, teaching=settings)) as client:
        for _ in range(MIN_SAMPLES_PER_DIGIT):
            post_sample(client, *digits[0])
        assert client.get("/samples").json()["ready"] is True
        refused = client.post("/finetune")
        assert refused.status_code == 409
        assert "lone.onnx: only a model with its .keras file" in refused.json()["detail"]


# ---- a real server killed ------------------------------------------------------------


def test_samples_stored_survive_a_kill_9_of_the_server_mid_upload(tmp_path, digits):
    """Every sample the server acknowledged is there after it is killed, each a whole PNG,
    and the restarted server counts them; an upload cut off leaves no visible file."""
    samples_dir = tmp_path / "samples"
    port = free_port()
    command = [
        *(sys.executable, "-m", "digitlab", "serve", "--port", str(port), "--workers", "1"),
        *("--samples-dir", str(samples_dir)),
    ]
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    acknowledged: list[str] = []
    stop = threading.Event()

    def upload() -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            while not stop.is_set():
                data, label = digits[len(acknowledged) % len(digits)]
                try:
                    answer = http.post(
                        "/samples",
                        params={"label": label},
                        content=data,
                        headers={"Content-Type": "image/png"},
                    )
                except httpx.TransportError:
                    return
                if answer.status_code == 201:
                    acknowledged.append(f"{label}/{answer.json()['id']}.png")

    try:
        wait_until_healthy(server, url, log_path, 120)
        uploader = threading.Thread(target=upload)
        uploader.start()
        while len(acknowledged) < 20 and uploader.is_alive():
            threading.Event().wait(0.05)
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
    finally:
        stop.set()
        server.kill()
    uploader.join(timeout=30)
    # A write the kill cut short can only have left a hidden temporary, which class-folder
    # readers and the store skip.
    visible = [path for path in samples_dir.glob("*/*.png") if not path.name.startswith(".")]
    stored = {str(path.relative_to(samples_dir)) for path in visible}
    assert len(acknowledged) >= 20
    assert set(acknowledged) <= stored
    for path in visible:
        assert Image.open(path).size == (28, 28)
    with server_process(
        tmp_path / "restarted.log", workers=1, extra_args=["--samples-dir", str(samples_dir)]
    ) as restarted:
        counts = httpx.get(f"{restarted}/samples").json()
    assert counts["total"] == len(stored)
