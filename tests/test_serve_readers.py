"""`POST /read`'s reader processes: small images are read in them, from one queue; the
server reads in its own process when they are not there (starting, dead, a model they
cannot load); they end with the server, however it ends."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from fastapi.testclient import TestClient

from digit_images import png_bytes
from digitlab.inference.predictor import Predictor
from digitlab.inference.pretrained import pretrained_onnx_path
from digitlab.number_images import compose_number
from digitlab.reading import read_number
from digitlab.serve.app import create_app, serve_predictor
from digitlab.serve.process import free_port, wait_until_healthy
from digitlab.serve.readers import PARENT_CHECK_S, READER_NICENESS
from readers import reader_processes, readers_ready, wait_for


@pytest.fixture(scope="module")
def numbers(mnist) -> list[bytes]:
    _, (x_test, y_test) = mnist
    rng = np.random.default_rng(21)
    chosen = []
    for gap in ("ordinary", "touching", "overlapping"):
        picked = rng.integers(0, len(x_test), size=4)
        chosen.append(compose_number(x_test[picked], y_test[picked], rng, gap).data)
    return chosen


@pytest.fixture
def client() -> Iterator[TestClient]:
    """The shipped model's app with two readers, which it starts before its first request."""
    with TestClient(create_app(reader_processes=2)) as client:
        assert client.app.state.readers is not None
        yield client


def post_read(client: TestClient, data: bytes) -> httpx.Response:
    return client.post("/read", content=data, headers={"Content-Type": "image/png"})


def test_small_images_are_read_by_the_readers_alone(
    client: TestClient, numbers: list[bytes], monkeypatch: pytest.MonkeyPatch
):
    readers = reader_processes(psutil.Process())
    assert len(readers) == 2
    # They yield the cores to the server process's own work.
    niceness = min(19, psutil.Process().nice() + READER_NICENESS)
    assert [reader.nice() for reader in readers] == [niceness, niceness]

    def in_the_server_process(*args: object, **kwargs: object) -> None:
        raise AssertionError("read in the server process")

    monkeypatch.setattr("digitlab.serve.read.read_number", in_the_server_process)
    shipped = Predictor.load(threads=1)
    for data in numbers:
        response = post_read(client, data)
        assert response.status_code == 200
        assert response.json()["number"] == read_number(data, shipped).number


def test_a_reader_that_dies_leaves_the_reading_to_the_server_process(
    client: TestClient, numbers: list[bytes]
):
    before = [post_read(client, data).json() for data in numbers]
    for reader in reader_processes(psutil.Process()):
        reader.kill()
        reader.wait(timeout=10)
    after = [post_read(client, data) for data in numbers]
    assert [response.status_code for response in after] == [200] * len(numbers)
    assert [response.json() for response in after] == before
    assert client.app.state.readers is None


def test_a_read_that_finds_its_readers_stopped_is_read_in_the_server_process(
    client: TestClient, numbers: list[bytes]
):
    expected = post_read(client, numbers[1]).json()
    # As when a model swap stops the readers between a read's arrival and its turn.
    client.app.state.readers.close(wait=True)
    response = post_read(client, numbers[1])
    assert response.status_code == 200
    assert response.json() == expected
    assert client.app.state.readers is None


def test_a_swapped_model_gets_readers_of_its_own(
    client: TestClient, numbers: list[bytes], tmp_path: Path
):
    first = {reader.pid for reader in reader_processes(psutil.Process())}
    copy = tmp_path / "copy.onnx"
    shutil.copyfile(pretrained_onnx_path(), copy)
    swapped = Predictor.load(copy, threads=1)
    client.portal.call(serve_predictor, client.app, swapped)
    readers_ready(client.app)
    wait_for(
        lambda: not first & {reader.pid for reader in reader_processes(psutil.Process())},
        "the first readers to end",
    )
    answer = post_read(client, numbers[0]).json()
    assert answer["model"] == "copy.onnx (ONNX Runtime)"
    assert answer["number"] == read_number(numbers[0], swapped).number


def test_a_keras_model_is_read_in_the_server_process(tiny_model_path: Path, mnist):
    _, (x_test, _) = mnist
    app = create_app(tiny_model_path, reader_processes=2)
    with TestClient(app) as client:
        response = client.post(
            "/read", content=numbers_png(x_test[:3]), headers={"Content-Type": "image/png"}
        )
        assert response.status_code == 200
        assert app.state.readers is None and app.state.readers_starting is None
        assert reader_processes(psutil.Process()) == []


def numbers_png(digits: np.ndarray) -> bytes:
    return png_bytes(np.hstack([255 - digit for digit in digits]))


# ---- a real server ------------------------------------------------------------------


def start_server(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`digitlab serve --readers 2` in a session of its own (so that Ctrl-C can be sent to
    its whole process group, as a terminal sends it), once its two readers exist: they are
    still starting, and the server does not answer yet."""
    port = free_port()
    log = tmp_path / "server.log"
    command = [sys.executable, "-m", "digitlab", "serve", "--port", str(port), "--readers", "2"]
    with log.open("wb") as output:
        server = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    process = psutil.Process(server.pid)
    wait_for(lambda: len(reader_processes(process)) == 2, "two readers")
    return server, f"http://127.0.0.1:{port}", log


@pytest.mark.slow
@pytest.mark.parametrize("when", ["while-the-readers-start", "after-a-read"])
def test_ctrl_c_stops_the_server_and_its_readers_quietly(
    tmp_path: Path, numbers: list[bytes], when: str
):
    server, url, log = start_server(tmp_path)
    readers = reader_processes(psutil.Process(server.pid))
    try:
        if when == "after-a-read":
            wait_until_healthy(server, url, log, 120)
            response = httpx.post(
                f"{url}/read", content=numbers[0], headers={"Content-Type": "image/png"}
            )
            assert response.status_code == 200
        os.killpg(server.pid, signal.SIGINT)
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
    gone, alive = psutil.wait_procs(readers, timeout=10)
    assert alive == []
    output = log.read_text()
    assert "with 1 process and 2 number readers" in output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output


@pytest.mark.slow
def test_readers_end_when_their_server_is_killed(tmp_path: Path):
    server, url, log = start_server(tmp_path)
    wait_until_healthy(server, url, log, 120)
    readers = reader_processes(psutil.Process(server.pid))
    server.kill()
    server.wait()
    gone, alive = psutil.wait_procs(readers, timeout=5 * PARENT_CHECK_S + 5)
    assert alive == []
