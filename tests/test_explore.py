"""The exploration report: figures, report.md and summary.json, on real data and real files.

Sample sizes are kept small (a few thousand images, t-SNE of a few hundred) so the whole
file runs in well under a minute; the full MNIST report is measured by hand (see the
report's timings).
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from digitlab.cli import app
from digitlab.data.sources import FASHION_MNIST_CLASSES, Dataset
from digitlab.errors import ConfigError
from digitlab.exploration.analysis import stratified_sample
from digitlab.exploration.explorer import FIGURES, explore

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _markdown_table(text: str, first_header: str) -> list[list[str]]:
    """The cells of the Markdown table in `text` whose first column is `first_header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} "))
    rows = itertools.takewhile(lambda line: line.startswith("|"), lines[start:])
    return [[cell.strip() for cell in row.split("|")[1:-1]] for row in rows]


@pytest.fixture(scope="module")
def mnist_subset(mnist) -> Dataset:
    (x_train, y_train), (x_test, y_test) = mnist
    return Dataset(
        "mnist-subset",
        x_train[:3000],
        y_train[:3000],
        x_test[:500],
        y_test[:500],
        [str(digit) for digit in range(10)],
    )


@pytest.fixture(scope="module")
def mnist_report(mnist_subset, tmp_path_factory):
    out = tmp_path_factory.mktemp("explore") / "report"
    steps: list[tuple[int, int, str]] = []
    report = explore(
        mnist_subset,
        out,
        sample_size=1000,
        tsne_size=300,
        seed=0,
        progress=lambda done, total, step: steps.append((done, total, step)),
    )
    return report, steps


def test_explore_writes_a_report_that_embeds_every_figure(mnist_report):
    report, _ = mnist_report
    expected = set(FIGURES) - {"image_sizes"}  # fixed-size arrays: no size histogram
    assert set(report.figures) == expected
    text = report.report_path.read_text()
    for path in report.figures.values():
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert path.stat().st_size > 5000
        assert f"]({path.name})" in text
    assert "All 3,500 images are 28x28 pixels" in text
    assert sorted(p.name for p in report.out_dir.iterdir()) == sorted(
        ["report.md", "summary.json", *(p.name for p in report.figures.values())]
    )


def test_summary_json_holds_the_numbers_the_report_quotes(mnist_report):
    report, _ = mnist_report
    summary = json.loads(report.summary_path.read_text())
    assert summary == report.summary
    text = report.report_path.read_text()
    assert f"**{summary['kmeans']['ari']:.3f}**" in text
    first, second = summary["pca"]["explained_variance_ratio"]
    assert f"{first:.1%} and {second:.1%}" in text
    assert f"{summary['pixels']['all']['mean']:.1f}" in text
    assert summary["class_counts"]["per_split"]["train"]["1"] == 339
    clusters = _markdown_table(text, "cluster")
    assert clusters[0] == ["cluster", "images", "majority class", "purity"]
    assert clusters[2:] == [
        [str(row["cluster"]), f"{row['size']:,}", row["majority"], f"{row['purity']:.0%}"]
        for row in summary["kmeans"]["clusters"]
    ]
    timings = _markdown_table(text, "step")
    assert [row[0] for row in timings[2:]] == list(summary["timings_s"])


def test_kmeans_ari_on_an_mnist_sample_is_valid_and_above_chance(mnist_report):
    summary = mnist_report[0].summary
    for ari in (
        summary["kmeans"]["ari"],
        summary["kmeans"]["ari_all_components"],
        summary["tsne"]["kmeans_ari"],
    ):
        assert -1.0 <= ari <= 1.0
    # Chance is 0; MNIST's 2-D PCA gives about 0.2, its 50-D PCA and t-SNE more.
    assert summary["kmeans"]["ari"] > 0.1
    assert summary["tsne"]["kmeans_ari"] > summary["kmeans"]["ari"]
    cluster_sizes = [row["size"] for row in summary["kmeans"]["clusters"]]
    assert sum(cluster_sizes) == summary["pca"]["sample_size"] == 1000
    assert 0.1 < sum(summary["pca"]["explained_variance_ratio"]) < 0.3


def test_pixel_statistics_match_numpy(mnist_report, mnist_subset):
    pixels = np.concatenate([mnist_subset.x_train.ravel(), mnist_subset.x_test.ravel()])
    ink = pixels[pixels != 0]
    stats = mnist_report[0].summary["pixels"]
    assert stats["background_value"] == 0
    for name, values in (("all", pixels), ("ink", ink)):
        assert stats[name]["count"] == len(values)
        assert stats[name]["mean"] == pytest.approx(values.mean(), abs=1e-3)
        assert stats[name]["std"] == pytest.approx(values.std(), abs=1e-3)
        assert stats[name]["median"] == np.quantile(values, 0.5, method="lower")


def test_explore_reports_each_step_before_it_runs(mnist_report):
    _, steps = mnist_report
    assert [done for done, _, _ in steps] == list(range(12))
    assert all(total == 11 for _, total, _ in steps)
    assert steps[-1][2] == "done"
    assert any("t-SNE of 300 images" in step for _, _, step in steps)


def test_explore_replaces_an_earlier_report_and_drops_its_stale_figures(
    mnist_report, mnist_subset, tmp_path
):
    out = tmp_path / "report"
    shutil.copytree(mnist_report[0].out_dir, out)
    assert (out / FIGURES["tsne"]).exists()
    small = Dataset(
        "small",
        mnist_subset.x_train[:300],
        mnist_subset.y_train[:300],
        mnist_subset.x_test[:0],
        mnist_subset.y_test[:0],
        mnist_subset.class_names,
    )
    report = explore(small, out, sample_size=200, tsne_size=0)
    assert not (out / FIGURES["tsne"]).exists()
    assert "tsne" not in report.figures
    text = report.report_path.read_text()
    assert "Skipped (t-SNE size 0)" in text
    assert "# Exploration report: small" in text
    assert set(report.summary["class_counts"]["per_split"]) == {"train"}


def test_explore_refuses_a_folder_holding_other_files(mnist_subset, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="notes.txt"):
        explore(mnist_subset, tmp_path, sample_size=100, tsne_size=0)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_stratified_sample_keeps_class_shares_and_single_member_classes():
    labels = np.array([0] * 800 + [1] * 199 + [2])
    picked = stratified_sample(labels, 100, seed=3)
    counts = np.bincount(labels[picked], minlength=3)
    assert counts.tolist() == [80, 20, 1]
    assert len(np.unique(picked)) == len(picked)
    assert np.array_equal(stratified_sample(labels, 100, seed=3), picked)
    assert len(stratified_sample(labels, 5000)) == len(labels)


# (size, colour mode, format, file suffix, EXIF orientation): one file of each per class.
MIXED_FILES = [
    ((40, 30), "L", "PNG", "png", None),
    ((100, 120), "RGBA", "PNG", "png", None),
    ((64, 48), "RGB", "JPEG", "jpg", None),
    ((64, 48), "RGB", "JPEG", "jpg", 6),  # stored landscape, shown (and loaded) portrait
    ((28, 28), "RGB", "BMP", "bmp", None),
    ((200, 150), "RGB", "PNG", "png", None),
    ((33, 57), "L", "BMP", "bmp", None),
]


def _draw_class_shape(label: int, size: tuple[int, int], mode: str) -> Image.Image:
    """Dark ink on white paper (transparent paper for RGBA): a ring, a bar or a zigzag."""
    width, height = size
    paper = (255, 255, 255, 0) if mode == "RGBA" else "white"
    ink = (0, 0, 0, 255) if mode == "RGBA" else "black"
    image = Image.new(mode, size, paper)
    draw = ImageDraw.Draw(image)
    stroke = max(2, min(size) // 8)
    box = (width * 0.2, height * 0.15, width * 0.8, height * 0.85)
    if label == 0:
        draw.ellipse(box, outline=ink, width=stroke)
    elif label == 1:
        draw.line([(width / 2, box[1]), (width / 2, box[3])], fill=ink, width=stroke)
    else:
        draw.line(
            [(box[0], box[1]), (box[2], box[1]), (box[0], box[3]), (box[2], box[3])],
            fill=ink,
            width=stroke,
        )
    return image


@pytest.fixture
def mixed_tree(tmp_path) -> Path:
    root = tmp_path / "shapes"
    for label, name in enumerate(["ring", "bar", "zigzag"]):
        folder = root / name
        folder.mkdir(parents=True)
        for index, (size, mode, fmt, suffix, orientation) in enumerate(MIXED_FILES):
            image = _draw_class_shape(label, size, mode)
            exif = Image.Exif()
            if orientation:
                exif[0x0112] = orientation
            image.save(folder / f"{name}_{index}.{suffix}", format=fmt, exif=exif)
    return root


def test_mixed_size_tree_gets_a_size_histogram_of_the_real_file_sizes(mixed_tree, tmp_path):
    report = explore(mixed_tree, tmp_path / "out", sample_size=100, tsne_size=18)
    sizes = report.summary["image_sizes"]
    assert sizes["source"] == "files"
    assert sizes["files"] == 3 * len(MIXED_FILES)
    shown = [(48, 64) if orientation else size for size, *_, orientation in MIXED_FILES]
    assert sizes["width"]["min"] == 28 and sizes["width"]["max"] == 200
    assert sizes["height"]["min"] == 28 and sizes["height"]["max"] == 150
    assert sizes["distinct_sizes"] == len(set(shown)) == 7
    common = {(w, h): n for w, h, n in sizes["most_common_sizes"]}
    assert common[(64, 48)] == common[(48, 64)] == 3
    assert sizes["format_modes"] == {
        "JPEG RGB": 6,
        "PNG L": 3,
        "PNG RGBA": 3,
        "BMP RGB": 3,
        "PNG RGB": 3,
        "BMP L": 3,
    }
    assert sizes["loaded_as"] == {"width": 28, "height": 28}
    histogram = report.figures["image_sizes"]
    assert histogram.read_bytes()[:8] == PNG_MAGIC
    text = report.report_path.read_text()
    assert f"]({histogram.name})" in text
    assert "widths from 28 to 200 pixels" in text
    assert report.summary["class_names"] == ["bar", "ring", "zigzag"]
    # Dark ink on white paper: the background is white, the ink darker.
    pixels = report.summary["pixels"]
    assert pixels["background_value"] == 255
    assert pixels["ink"]["mean"] < 200


def test_cli_explore_on_fashion_mnist_names_the_classes(tmp_path):
    out = tmp_path / "fashion"
    result = CliRunner().invoke(
        app,
        [
            "explore",
            "--dataset",
            "fashion-mnist",
            "--out",
            str(out),
            "--sample-size",
            "600",
            "--tsne-size",
            "0",
            "--seed",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "adjusted Rand index" in result.stdout
    assert "[ 1/10] loading the dataset ..." in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["class_names"] == FASHION_MNIST_CLASSES
    assert summary["seed"] == 1
    assert summary["class_counts"]["per_split"]["test"]["Ankle boot"] == 1000
    text = (out / "report.md").read_text()
    assert "# Exploration report: fashion-mnist" in text
    assert "`Ankle boot`" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "/no/such/dataset"], "/no/such/dataset"),
        (["--out", "{occupied}"], "notes.txt"),
    ],
)
def test_cli_explore_errors_are_one_line(args, message, tmp_path):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    args = [arg.format(occupied=occupied) for arg in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "new")]
    result = CliRunner().invoke(app, ["explore", *args])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    # At most the progress line of the step that failed, closed, then the error.
    *progress, error = result.stderr.strip().splitlines()
    assert error.startswith("Error: ") and message in error
    assert progress in ([], ["[ 1/11] loading the dataset ... failed"])
    assert "Traceback" not in result.output
    assert (occupied / "notes.txt").read_text() == "mine"
