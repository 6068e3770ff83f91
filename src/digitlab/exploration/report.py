"""The Markdown text of the exploration report, written from its summary's numbers alone.

Keeping the text a function of `summary.json` means the report never quotes a number
that the summary does not hold.
"""

from __future__ import annotations

from typing import Any

from digitlab.tables import markdown_table


def _figure(summary: dict[str, Any], key: str, alt_text: str) -> str:
    """A Markdown image of one of the report's figures, by its key in `summary["figures"]`."""
    return f"![{alt_text}]({summary['figures'][key]})"


def _how_closely(ari: float) -> str:
    if ari < 0.1:
        return "barely better than chance"
    if ari < 0.3:
        return "weakly"
    if ari < 0.6:
        return "moderately"
    return "closely"


def _counts_section(summary: dict[str, Any]) -> list[str]:
    counts = summary["class_counts"]
    splits = counts["per_split"]
    total_train = sum(splits["train"].values())
    (big, big_n), (small, small_n) = counts["largest"], counts["smallest"]
    ratio = counts["imbalance_ratio"]
    if big_n == small_n:
        sizes = f"Every class has {big_n:,} training images."
    else:
        sizes = (
            f"The largest training class is `{big}` ({big_n:,} images, "
            f"{big_n / total_train:.1%}), the smallest `{small}` ({small_n:,}, "
            f"{small_n / total_train:.1%})."
        )
    lines = [
        "## Class counts",
        _figure(summary, "class_counts", "Images per class and split"),
        f"Each bar is the number of images of one class in one split. {sizes}",
    ]
    if ratio is None:
        lines.append(f"Class `{small}` has no training images: a model cannot learn it.")
    elif ratio < 1.5:
        lines.append(
            f"Largest over smallest is {ratio:.2f}: the classes are close to balanced, so "
            "accuracy is a fair summary and no class weighting is needed."
        )
    else:
        lines.append(
            f"Largest over smallest is {ratio:.2f}: the classes are imbalanced, so read the "
            "per-class recall and the macro-averaged F1, not only accuracy, and consider "
            "class weights."
        )
    if "max_share_gap_points" in counts:
        lines.append(
            "Between train and test, no class's share differs by more than "
            f"{counts['max_share_gap_points']:.2f} percentage points, so the test set "
            "measures the same mix of classes that training sees."
        )
    return lines


def _look_sections(summary: dict[str, Any]) -> list[str]:
    lines = [
        "## Samples",
        _figure(summary, "samples", f"{summary['samples_per_class']} random samples per class"),
        f"Each row shows up to {summary['samples_per_class']} training images of one class, "
        f"drawn at random (seed {summary['seed']}). They show how much the writing varies "
        "within a class; mislabelled images, odd crops or inverted colours show up here.",
        "## Mean image per class",
        _figure(summary, "mean_images", "Mean image per class"),
        "The pixel-wise mean of all training images of each class. "
        f"{'Dark' if summary['pixels']['background_value'] > 127 else 'Bright'}, sharp parts "
        "are where nearly every example has ink; soft halos show the spread in position, "
        "slant and stroke width.",
    ]
    similar = summary["mean_images"]
    if similar:
        (a, b, high), (c, d, low) = similar["most_similar"], similar["least_similar"]
        lines.append(
            f"The most alike class means are `{a}` and `{b}` (pixel correlation {high:.2f}): "
            f"a pair to look for in the confusion matrix. The least alike are `{c}` and `{d}` "
            f"({low:.2f})."
        )
    return lines


def _size_section(summary: dict[str, Any]) -> list[str]:
    sizes = summary["image_sizes"]
    lines = ["## Image sizes"]
    if sizes["source"] == "arrays":
        lines.append(
            f"All {sizes['images']:,} images are {sizes['width']}x{sizes['height']} pixels with "
            "one grayscale channel (uint8), so there is nothing to resize and no figure: a "
            "histogram of a single value would show nothing."
        )
        return lines
    width, height = sizes["width"], sizes["height"]
    common = ", ".join(f"{w}x{h} ({n})" for w, h, n in sizes["most_common_sizes"])
    loaded = sizes["loaded_as"]
    lines += [
        _figure(summary, "image_sizes", "Image widths, heights, formats and modes"),
        f"The {sizes['files']:,} image files have widths from {width['min']} to {width['max']} "
        f"pixels (median {width['median']:g}) and heights from {height['min']} to "
        f"{height['max']} (median {height['median']:g}), in {sizes['distinct_sizes']} distinct "
        f"sizes; the most common are {common}. Sizes are read from the file headers, after "
        "any EXIF rotation.",
        markdown_table(["format and mode", "files"], list(sizes["format_modes"].items()), {1}),
        f"Loading turns every file into a {loaded['width']}x{loaded['height']} grayscale image "
        "(transparency over white, then resized), so the figures below describe the images "
        "a model sees, not the files.",
    ]
    if sizes["not_images"]:
        lines.append(
            f"{len(sizes['not_images'])} files are not images and were skipped: "
            + ", ".join(f"`{name}`" for name in sizes["not_images"][:10])
            + (" ..." if len(sizes["not_images"]) > 10 else "")
        )
    return lines


def _pixel_section(summary: dict[str, Any]) -> list[str]:
    pixels = summary["pixels"]
    every, ink = pixels["all"], pixels["ink"]
    background = pixels["background_value"]
    return [
        "## Pixel intensity",
        _figure(summary, "pixel_intensity", "Histograms of all pixel values and of ink pixels"),
        markdown_table(
            ["pixels", "count", "mean", "std", "median"],
            [
                [name, f"{s['count']:,}", f"{s['mean']:.1f}", f"{s['std']:.1f}", f"{s['median']:g}"]
                for name, s in (("all", every), (f"ink (value ≠ {background})", ink))
            ],
            right=range(1, 5),
        ),
        f"The most common value, {background}, is the background: it covers "
        f"{pixels['background_share']:.1%} of all pixels, which is why both histograms use a "
        "logarithmic count axis. Ink pixels are all the others; their histogram shows how "
        "strokes are drawn: a peak at the far end means solid strokes, the spread between "
        "is anti-aliased edges. digitlab's models scale the raw 0..255 values themselves.",
    ]


def _projection_sections(summary: dict[str, Any]) -> list[str]:
    pca, kmeans = summary["pca"], summary["kmeans"]
    first, second = pca["explained_variance_ratio"]
    ari = kmeans["ari"]
    majorities = {row["majority"] for row in kmeans["clusters"]}
    unclaimed = [name for name in summary["class_names"] if name not in majorities]
    lines = [
        "## PCA projection",
        _figure(summary, "pca", "PCA projection coloured by label"),
        f"A stratified random sample of {pca['sample_size']:,} training images (each class in "
        "its own proportion), each flattened and scaled to 0..1, projected on its first two "
        f"principal components (scikit-learn PCA). They explain {first:.1%} and {second:.1%} of "
        f"the pixel variance ({first + second:.1%} together; {pca['components']} components "
        f"explain {pca['explained_variance_ratio_all_components']:.1%}). Colours are the true "
        "labels: classes that form their own cloud differ in their dominant pixel patterns; "
        "clouds that overlap cannot be told apart by any linear 2-D view.",
        "## k-means clusters of the PCA projection",
        _figure(summary, "kmeans", "k-means clusters on the PCA projection"),
        f"k-means (k = {kmeans['k']}, the number of classes) on the 2-D PCA points, without "
        "the labels. Shaded regions are the clusters, crosses their centres, each marked with "
        "the class most of its points belong to and that class's share (purity). "
        f"The adjusted Rand index (ARI) between clusters and labels is **{ari:.3f}** "
        "(0 = chance agreement, 1 = the clusters are the classes): the clusters follow the "
        f"classes {_how_closely(ari)}. k-means on all {pca['components']} PCA components "
        f"reaches ARI {kmeans['ari_all_components']:.3f}.",
        markdown_table(
            ["cluster", "images", "majority class", "purity"],
            [
                [r["cluster"], f"{r['size']:,}", r["majority"], f"{r['purity']:.0%}"]
                for r in kmeans["clusters"]
            ],
            right={0, 1, 3},
        ),
    ]
    if unclaimed:
        lines.append(
            "No cluster is mostly "
            + ", ".join(f"`{name}`" for name in unclaimed)
            + ": in this view these classes are mixed into others."
        )
    return lines


def _tsne_section(summary: dict[str, Any]) -> list[str]:
    if "tsne" not in summary:
        return ["## t-SNE", "Skipped (t-SNE size 0)."]
    tsne, pca_ari = summary["tsne"], summary["kmeans"]["ari"]
    return [
        "## t-SNE embedding",
        _figure(summary, "tsne", "t-SNE embedding coloured by label"),
        f"t-SNE (scikit-learn, perplexity {tsne['perplexity']:g}, PCA initialisation) of a "
        f"stratified {tsne['sample_size']:,} of the PCA sample, after PCA to "
        f"{tsne['pca_components']} dimensions; it took {tsne['seconds']:.1f} s. Unlike PCA it "
        "keeps each image's nearest neighbours near, so a class that is an island here but "
        "overlaps others in the PCA view is separable by a non-linear model. The distances "
        "between islands and their sizes mean little. k-means on this map reaches ARI "
        f"{tsne['kmeans_ari']:.3f}, against {pca_ari:.3f} on the PCA projection.",
    ]


def _feature_section(summary: dict[str, Any]) -> list[str]:
    features = summary["features"]
    settings = features["settings"]
    (in_w, in_h), (up_w, up_h) = features["input_size"], features["upscaled_size"]
    blur = settings["blur_kernel"]
    low, high = settings["canny_thresholds"]
    return [
        "## Classic feature views",
        _figure(summary, "feature_views", "Classic feature views of one sample per class"),
        "One training image per class (the first of its sample row), with OpenCV. Each is "
        f"first upscaled {features['scale']} times with cubic interpolation ({in_w}x{in_h} "
        f"becomes {up_w}x{up_h}), because ORB and SIFT find few or no keypoints on a "
        f"{in_w}x{in_h} image: ORB needs a patch around each point and SIFT a pyramid of "
        "blurred, shrunk copies.",
        f"Columns: the upscaled input; a {blur}x{blur} Gaussian blur, which removes pixel "
        "noise before thresholding and edge detection; a binary threshold chosen by Otsu's "
        "method on the blurred image (`t`, the value that best separates ink from background); "
        f"Canny edges of the blurred image (hysteresis thresholds {low} and {high}); Harris "
        f"corners (red: local maxima above {settings['harris_relative_threshold']:.0%} of the "
        "strongest response); ORB keypoints (green dots: FAST corners with oriented BRIEF "
        f"descriptors, {settings['orb_patch_size']}-pixel patch, at most "
        f"{settings['orb_max_keypoints']}); SIFT keypoints (cyan circles, as large as each "
        "keypoint's scale). Such hand-made features fed classifiers before convolutional "
        "networks, whose first layers learn edge and corner detectors of their own.",
        markdown_table(
            ["class", "Otsu t", "edge pixels", "Harris corners", "ORB", "SIFT"],
            [
                [
                    name,
                    f"{v['otsu_threshold']:.0f}",
                    f"{v['edge_pixels']:,}",
                    v["harris_corners"],
                    v["orb_keypoints"],
                    v["sift_keypoints"],
                ]
                for name, v in features["per_class"].items()
            ],
            right=range(1, 6),
        ),
    ]


def render_report(summary: dict[str, Any], summary_file: str = "summary.json") -> str:
    """The Markdown text of the report from `summary` (as `explore` writes it to `summary_file`).

    Figures are linked by the file names in `summary["figures"]`, relative to the report.
    """
    splits = summary["class_counts"]["per_split"]
    overview = ", ".join(f"{split} {sum(c.values()):,} images" for split, c in splits.items())
    sections = [
        f"# Exploration report: {summary['dataset']}",
        f"Written by `digitlab explore` (digitlab {summary['version']}, seed {summary['seed']}). "
        f"{overview}; {len(summary['class_names'])} classes: "
        + ", ".join(f"`{name}`" for name in summary["class_names"])
        + f". Every number below is also in `{summary_file}`.",
        *_counts_section(summary),
        *_look_sections(summary),
        *_size_section(summary),
        *_pixel_section(summary),
        *_projection_sections(summary),
        *_tsne_section(summary),
        *_feature_section(summary),
        "## Timings",
        markdown_table(["step", "seconds"], list(summary["timings_s"].items()), {1}),
    ]
    return "\n\n".join(sections) + "\n"
