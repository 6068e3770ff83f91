"""`digitlab predict` output names every file exactly, even one whose name is not UTF-8."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

from PIL import Image


def test_json_output_is_utf8_and_keeps_a_non_utf8_name_usable(tmp_path, mnist):
    _, (x_test, _) = mnist
    name = os.path.join(os.fsencode(tmp_path), b"bad\xffname.png")
    Image.fromarray(255 - x_test[0]).save(name, format="PNG")

    done = subprocess.run(
        [sys.executable, "-m", "digitlab", "predict", str(tmp_path), "--format", "json"],
        capture_output=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr
    (record,) = json.loads(done.stdout.decode("utf-8"))  # strict UTF-8, as any reader wants
    assert record["path"] == f"{tmp_path}/bad\ufffdname.png"
    assert base64.b64decode(record["path_base64"]) == name
    with open(base64.b64decode(record["path_base64"]), "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert record["digit"] == 7
