"""Detection AP: hand-computed cases, the voc-mini reference values and the ap-toy fixtures."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest

from googlenet.cli import main
from googlenet.detect.metrics import (
    Detection,
    GroundTruth,
    average_precision,
    evaluate_class,
    evaluate_detections,
    mean_ap,
)
from googlenet.detect.voc import load_voc, read_detections, voc_images, write_detections
from googlenet.errors import DataError


def _truth(*objects: tuple[str, str, tuple[float, float, float, float], bool]) -> dict[str, GroundTruth]:
    truth: dict[str, GroundTruth] = {}
    for image, label, box, difficult in objects:
        truth.setdefault(image, GroundTruth()).add(label, box, difficult)
    return truth


def test_hand_computed_ap_with_a_duplicate_and_a_miss() -> None:
    truth = _truth(("a", "cat", (0, 0, 9, 9), False), ("a", "cat", (20, 20, 29, 29), False),
                   ("b", "cat", (0, 0, 9, 9), False))  # fmt: skip
    dets = [
        Detection("a", "cat", 0.9, (0, 0, 9, 9)),  # TP
        Detection("a", "cat", 0.8, (0, 0, 9, 9)),  # duplicate of a found object: FP
        Detection("b", "cat", 0.7, (1, 1, 10, 10)),  # IoU 81/119 = 0.68: TP
        Detection("c", "cat", 0.6, (0, 0, 9, 9)),  # an image without cats: FP
    ]
    result = evaluate_class("cat", dets, truth)
    np.testing.assert_allclose(result.recall, [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(result.precision, [1, 1 / 2, 2 / 3, 1 / 2])
    # envelope: precision 1 up to recall 1/3, 2/3 up to 2/3, nothing beyond
    assert result.ap == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3)
    assert result.positives == 3 and result.detections == 4
    # 11-point: t = 0, 0.1, 0.2, 0.3 -> 1; t = 0.4, 0.5, 0.6 -> 2/3; t >= 0.7 -> 0
    assert evaluate_class("cat", dets, truth, eleven_point=True).ap == pytest.approx((4 + 3 * 2 / 3) / 11)


def test_precision_that_rises_again_is_enveloped() -> None:
    # TP, FP, TP, TP over 4 objects: precision 1, 1/2, 2/3, 3/4 dips and rises again, so the envelope
    # (the best precision at any higher recall) lifts recall 1/4..1/2 from 2/3 to 3/4.
    recall = np.array([1, 1, 2, 3]) / 4
    precision = np.array([1, 1 / 2, 2 / 3, 3 / 4])
    assert average_precision(recall, precision) == pytest.approx(1 / 4 + 1 / 4 * 3 / 4 + 1 / 4 * 3 / 4)
    # without the envelope it would be 1/4 + 1/4 x 2/3 + 1/4 x 3/4 = 0.604
    assert average_precision(recall, precision) != pytest.approx(1 / 4 + 1 / 4 * 2 / 3 + 1 / 4 * 3 / 4)
    # 11-point: t <= 0.2 -> 1; t = 0.3..0.7 -> 3/4; t >= 0.8 -> 0
    assert average_precision(recall, precision, eleven_point=True) == pytest.approx((3 + 5 * 3 / 4) / 11)


def test_inclusive_pixel_boxes_change_the_iou() -> None:
    # 10x10 boxes (0..9 inclusive) offset by 5: overlap 5x10 = 50, union 150 -> IoU 1/3 with +1 widths;
    # without the +1 the same numbers would give 45/117.
    truth = _truth(("a", "dog", (0, 0, 9, 9), False))
    det = [Detection("a", "dog", 1.0, (5, 0, 14, 9))]
    assert evaluate_class("dog", det, truth, iou_threshold=0.333).ap == 1.0
    assert evaluate_class("dog", det, truth, iou_threshold=0.334).ap == 0.0


def test_difficult_objects_are_neither_found_nor_missed() -> None:
    truth = _truth(("a", "cow", (0, 0, 9, 9), True), ("a", "cow", (50, 50, 59, 59), False))
    dets = [Detection("a", "cow", 0.9, (0, 0, 9, 9)), Detection("a", "cow", 0.8, (50, 50, 59, 59))]
    result = evaluate_class("cow", dets, truth)
    assert result.positives == 1 and result.ap == 1.0  # the difficult match is ignored, not a FP
    counted = evaluate_class("cow", dets, truth, use_difficult=True)
    assert counted.positives == 2 and counted.ap == 1.0


def test_ilsvrc_small_object_threshold() -> None:
    # a 10x10 object: threshold min(0.5, 100 / 400) = 0.25; a detection at IoU 1/3 counts
    truth = _truth(("a", "ant", (0, 0, 9, 9), False))
    det = [Detection("a", "ant", 1.0, (5, 0, 14, 9))]
    assert evaluate_class("ant", det, truth).ap == 0.0
    assert evaluate_class("ant", det, truth, ilsvrc_small=True).ap == 1.0


def test_ilsvrc_matches_the_best_object_not_yet_found() -> None:
    # Two 50x50 ants 10 pixels apart; the second detection overlaps the found one most (IoU 0.85) and
    # the other one enough (0.79): VOC calls it a duplicate, ILSVRC's devkit gives it the free object.
    truth = _truth(("a", "ant", (10, 10, 59, 59), False), ("a", "ant", (20, 10, 69, 59), False))
    dets = [Detection("a", "ant", 0.9, (10, 10, 59, 59)), Detection("a", "ant", 0.8, (14, 10, 63, 59))]
    assert evaluate_class("ant", dets, truth).ap == pytest.approx(0.5)
    assert evaluate_class("ant", dets, truth, ilsvrc_small=True).ap == 1.0


def test_average_precision_edges() -> None:
    assert average_precision(np.array([]), np.array([])) == 0.0
    assert average_precision(np.array([1.0]), np.array([1.0])) == 1.0
    no_positives = evaluate_detections([], _truth(("a", "cat", (0, 0, 1, 1), True)))
    assert np.isnan(no_positives["cat"].ap) and np.isnan(mean_ap(no_positives))


def test_voc_mini_reference_values(shared_data: Path) -> None:
    root = shared_data / "voc-mini"
    expected = json.loads((root / "expected_map.json").read_text())
    truth = load_voc(root)
    detections = read_detections(root / "detections.csv")
    assert len(truth) == 100 and len(detections) == 452
    # The reference evaluator does not read VOC's "difficult" flag, so it counts those objects;
    # --use-difficult reproduces it. VOC's own rule (ignore them) gives different values.
    for key, eleven in (("all_point", False), ("eleven_point", True)):
        results = evaluate_detections(detections, truth, eleven_point=eleven, use_difficult=True)
        assert mean_ap(results) == pytest.approx(expected[key]["mAP"], abs=1e-9)
        for name, value in expected[key]["per_class"].items():
            assert results[name].ap == pytest.approx(value, abs=1e-9), (key, name)
    voc_rule = evaluate_detections(detections, truth)
    assert sum(r.positives for r in voc_rule.values()) < sum(
        r.positives for r in evaluate_detections(detections, truth, use_difficult=True).values()
    )


def _read_xywh(folder: Path, with_score: bool) -> list[tuple[str, str, float, tuple[float, ...]]]:
    rows = []
    for path in sorted(folder.glob("*.txt")):
        for line in path.read_text().splitlines():
            parts = line.split()
            if not parts:
                continue
            score = float(parts[1]) if with_score else 1.0
            x, y, w, h = map(float, parts[2:6] if with_score else parts[1:5])
            # the fixture's x, y, w, h convert to corners as x + w, y + h; IoU then adds the +1
            rows.append((path.stem, parts[0], score, (x, y, x + w, y + h)))
    return rows


def test_ap_toy_fixture(shared_data: Path) -> None:
    root = shared_data / "voc-mini" / "ap-toy"
    expected = json.loads((root / "expected.json").read_text())["expected_AP"]
    truth: dict[str, GroundTruth] = {}
    for image, label, _, box in _read_xywh(root / "gts", with_score=False):
        truth.setdefault(image, GroundTruth()).add(label, box)
    dets = [
        Detection(image, label, score, box) for image, label, score, box in _read_xywh(root / "dets", True)
    ]  # type: ignore[arg-type]
    for key, eleven in (("all_point", False), ("eleven_point", True)):
        for threshold, value in expected[key].items():
            results = evaluate_detections(dets, truth, iou_threshold=float(threshold), eleven_point=eleven)
            assert mean_ap(results) == pytest.approx(value, abs=1e-9), (key, threshold)


def test_detect_evaluate_command(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shared_data / "voc-mini"
    args = ["detect", "evaluate", "--annotations", str(root), "--detections", str(root / "detections.csv")]
    assert main([*args, "--use-difficult", "--json", "--plot-dir", str(tmp_path / "pr")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mAP"] == pytest.approx(0.610912907479439, abs=1e-9) and report["images"] == 100
    assert len(report["plots"]) == 20 and all(Path(p).stat().st_size > 1000 for p in report["plots"])
    marked = sum(xml.read_text().count("<difficult>1</difficult>") for xml in root.rglob("Annotations/*.xml"))
    assert report["difficult_objects"] == marked > 0
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "mAP" in text and "aeroplane" in text and "all-point AP" in text
    assert f"{marked} object(s) marked difficult: ignored, as VOC's devkit does (--use-difficult" in text
    assert main([*args, "--ilsvrc-small"]) == 0  # each object's own threshold, not a flat 0.5
    assert "IoU >= min(0.5, wh/((w+10)(h+10))) per object" in capsys.readouterr().out
    # a file of part of the set (detect predict --limit) says so beside its mAP
    with_some = sorted(
        {line.split(",")[0] for line in (root / "detections.csv").read_text().splitlines()[1:]}
    )
    assert report["images_without_detections"] == 100 - len(with_some)
    part = tmp_path / "part.csv"
    lines = (root / "detections.csv").read_text().splitlines()
    part.write_text(
        "\n".join([lines[0], *(line for line in lines[1:] if line.startswith(with_some[0] + ","))])
    )
    assert main(["detect", "evaluate", "--annotations", str(root), "--detections", str(part)]) == 0
    assert "100 images (99 with no detection in the file)" in capsys.readouterr().out


def _voc_tree(year_dir: Path, ids: list[str]) -> None:
    (year_dir / "ImageSets" / "Main").mkdir(parents=True)
    (year_dir / "Annotations").mkdir()
    (year_dir / "ImageSets" / "Main" / "val.txt").write_text("\n".join(ids) + "\n\n")
    for i in ids:
        (year_dir / "Annotations" / f"{i}.xml").write_text(
            f"<annotation><filename>{i}.jpg</filename><object><name>cat</name><difficult>0</difficult>"
            "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object></annotation>"
        )


def test_a_voc_year_folder_is_read_where_it_is(tmp_path: Path) -> None:
    """VOC<year> given directly under a parent not named VOCdevkit: its own lists and annotations, not
    those of a VOCdevkit tree beside it (torchvision's VOCDetection(root, year) would look there)."""
    _voc_tree(tmp_path / "VOCdevkit" / "VOC2012", ["a1", "a2", "a3"])
    _voc_tree(tmp_path / "mine" / "VOC2012", ["m1"])
    truth = load_voc(tmp_path / "mine" / "VOC2012")
    assert (
        list(truth) == ["m1"]
        and truth["m1"].boxes == [(1.0, 2.0, 30.0, 40.0)]
        and truth["m1"].labels == ["cat"]
    )
    assert [i for i, _ in voc_images(tmp_path / "mine" / "VOC2012")] == ["m1"]
    assert voc_images(tmp_path)[0][1] == str(tmp_path / "VOCdevkit" / "VOC2012" / "JPEGImages" / "a1.jpg")


def test_a_voc_root_with_two_years_asks_which(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """VOC07+12 trees hold both years under one VOCdevkit: scoring one year's val against the other's
    without a word would be wrong; the error names both and asks for the year folder."""
    _voc_tree(tmp_path / "VOCdevkit" / "VOC2007", ["a1"])
    _voc_tree(tmp_path / "VOCdevkit" / "VOC2012", ["b1", "b2"])
    with pytest.raises(DataError, match="holds VOC2007, VOC2012; give the VOC<year> folder"):
        load_voc(tmp_path)
    assert list(load_voc(tmp_path / "VOCdevkit" / "VOC2007")) == ["a1"]
    dets = tmp_path / "d.csv"
    write_detections(dets, [Detection("a1", "cat", 0.5, (1.0, 2.0, 30.0, 40.0))])
    code = main(["detect", "evaluate", "--annotations", str(tmp_path), "--detections", str(dets)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "VOC2007, VOC2012" in err


def test_detections_round_trip_and_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dets = [Detection("img1", "cat", 0.5, (1.0, 2.0, 3.0, 4.0))]
    write_detections(tmp_path / "d.csv", dets)
    assert read_detections(tmp_path / "d.csv") == dets
    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,class,score,xmin,ymin,xmax,ymax\nimg1,cat,high,1,2,3,4\n")
    voc = tmp_path / "voc"
    (voc / "VOCdevkit" / "VOC2012" / "Annotations").mkdir(parents=True)
    code = main(["detect", "evaluate", "--annotations", str(voc), "--detections", str(bad)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "ImageSets/Main/val.txt" in err
    with pytest.raises(DataError, match=r"bad.csv:2: score and box must be numbers"):
        read_detections(bad)
    header = "image_id,class,score,xmin,ymin,xmax,ymax\n"
    bad.write_text(header + "img1,cat,0.5,1,2,3\n")  # a value missing
    with pytest.raises(DataError, match=r"bad.csv:2: 6 fields, expected 7 \(image_id,class,"):
        read_detections(bad)
    bad.write_text(header + "img1,cat,0.5,1,2,3,4\nimg1,cat,0.5,1,2,3,4,0.9\n")  # one too many, not scored
    with pytest.raises(DataError, match=r"bad.csv:3: 8 fields, expected 7"):
        read_detections(bad)
    os.mkfifo(tmp_path / "pipe.csv")  # open() would wait for a writer
    with pytest.raises(DataError, match=r"pipe\.csv: not a regular file"):
        read_detections(tmp_path / "pipe.csv")
    bad.write_text("image,score\n")
    with pytest.raises(DataError, match="missing column"):
        read_detections(bad)
    assert (
        main(["detect", "evaluate", "--annotations", str(tmp_path / "none"), "--detections", str(bad)]) == 1
    )
    assert "none: no such folder (a VOC root" in capsys.readouterr().err


def test_the_drawn_precision_envelope_has_the_all_point_ap_as_its_area() -> None:
    from googlenet.detect.metrics import precision_envelope

    # voc-mini's motorbike: a false positive, then two true ones, of 5 objects: AP 0.4 x 2/3
    x, y = precision_envelope(np.array([0.0, 0.2, 0.4]), np.array([0.0, 0.5, 2 / 3]))
    assert float(np.sum(np.diff(x) * y[1:])) == pytest.approx(
        0.4 * 2 / 3
    )  # "steps-pre": y[i] over (x[i-1], x[i]]
    rng = np.random.default_rng(0)
    for _ in range(50):
        hits = rng.random(int(rng.integers(1, 30))) < 0.5
        positives = int(hits.sum()) + int(rng.integers(0, 5))
        if positives == 0:
            continue
        recall, precision = np.cumsum(hits) / positives, np.cumsum(hits) / np.arange(1, hits.size + 1)
        x, y = precision_envelope(recall, precision)
        assert float(np.sum(np.diff(x) * y[1:])) == pytest.approx(average_precision(recall, precision))


def test_pr_plots_show_class_names_as_written(tmp_path: Path) -> None:
    from googlenet.detect.command import save_pr_plots
    from googlenet.detect.metrics import ClassResult

    curve = np.array([0.5, 1.0]), np.array([1.0, 0.5])
    results = {name: ClassResult(name, 0.5, 2, 2, *curve) for name in ("$x^$", "cat")}  # "$x^$": bad TeX
    paths = save_pr_plots(results, str(tmp_path))
    assert len(paths) == 2 and all(Path(p).stat().st_size > 0 for p in paths)


def test_detections_on_images_outside_the_ground_truth_are_not_scored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # as `detect evaluate` does; the function counted them as false positives
    truth = _truth(("a", "cat", (0, 0, 9, 9), False))
    dets = [Detection("a", "cat", 0.5, (0, 0, 9, 9)), Detection("z", "cat", 0.9, (0, 0, 9, 9))]
    with caplog.at_level("WARNING", logger="googlenet"):
        results = evaluate_detections(dets, truth)
    assert results["cat"].ap == 1.0 and results["cat"].detections == 1
    assert "1 image id(s) of the detections are not in the ground truth, e.g. 'z'" in caplog.text


def _annotation(year_dir: Path, image_id: str, body: str | bytes, *, listed: list[str] | None = None) -> None:
    """One annotation file (written as given) in a VOC tree whose val list holds `listed` (or the id)."""
    (year_dir / "Annotations").mkdir(parents=True, exist_ok=True)
    (year_dir / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    path = year_dir / "Annotations" / f"{image_id}.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body.encode() if isinstance(body, str) else body)
    (year_dir / "ImageSets" / "Main" / "val.txt").write_text("\n".join(listed or [image_id]) + "\n")


_CAT = "<object><name>cat</name><bndbox><xmin>10</xmin><ymin>10</ymin><xmax>50</xmax><ymax>50</ymax></bndbox></object>"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<annotations>" + _CAT + "</annotations>", "root element is <annotations>, not <annotation>"),
        ("<annotation>" + _CAT.replace("<name>cat</name>", "<name>cat</name><name>dog</name>") + "</annotation>",
         "object 1: 2 <name> elements, expected one"),
        ("<annotation>" + _CAT.replace("<name>cat</name>", "<name><en>cat</en></name>") + "</annotation>",
         "<name> must hold text only, not elements"),
        ("<annotation>" + _CAT.replace("cat", " ") + "</annotation>", "<name> must hold text only, not nothing"),
        ("<annotation><object/></annotation>", "object 1: 0 <name> elements"),
        ("<annotation>" + _CAT.replace("</name>", "</name><difficult>true2</difficult>") + "</annotation>",
         "<difficult> is 'true2'; expected 0 or 1"),
        ("<annotation>" + _CAT.replace("</name>", "</name><difficult></difficult>") + "</annotation>",
         "<difficult> must hold text only"),
        ('<?xml version="1.0" encoding="x-nonexistent"?><annotation>' + _CAT + "</annotation>",
         "not a readable VOC annotation"),
        ("<annotation><size><width>100</width><height>80</height></size>"
         + _CAT.replace("<xmin>10</xmin>", "<xmin>900</xmin>").replace("<xmax>50</xmax>", "<xmax>990</xmax>")
         + "</annotation>", "lies outside its 100x80 image"),
    ],
)  # fmt: skip
def test_a_voc_annotation_that_is_not_one_is_a_line_naming_the_file_and_object(
    tmp_path: Path, body: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each of these passed unseen (a second name, an empty <object/>, `true2` as not difficult, a box
    outside the image) or ended in a traceback (a wrong root, an unknown encoding) before 2026-12-07."""
    year = tmp_path / "VOC2012"
    _annotation(year, "img1", body)
    with pytest.raises(DataError, match=re.escape(message)) as caught:
        load_voc(year)
    assert str(year / "Annotations" / "img1.xml") in str(caught.value)
    dets = tmp_path / "d.csv"
    write_detections(dets, [Detection("img1", "cat", 0.9, (10.0, 10.0, 50.0, 50.0))])
    assert main(["detect", "evaluate", "--annotations", str(year), "--detections", str(dets)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and message in err


def test_voc_annotations_read_as_voc_means_them(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An empty annotation is an image without objects; true/false difficult flags; a GBK-declared file
    (expat reads no multi-byte encoding); a box past the image's edge clipped to its <size>, with a
    warning; a byte-order mark before the list's first id."""
    year = tmp_path / "mine"  # any folder holding Annotations/ and ImageSets/, whatever its name
    _annotation(year, "empty", "<annotation></annotation>")
    _annotation(
        year,
        "flags",
        "<annotation>" + _CAT.replace("</name>", "</name><difficult>True</difficult>") + "</annotation>",
    )
    gbk = '<?xml version="1.0" encoding="GBK"?><annotation>' + _CAT.replace("cat", "猫") + "</annotation>"
    _annotation(year, "gbk", gbk.encode("gbk"))
    _annotation(
        year, "edge", "<annotation><size><width>40</width><height>45</height></size>" + _CAT + "</annotation>"
    )
    (year / "ImageSets" / "Main" / "val.txt").write_bytes(b"\xef\xbb\xbfempty\nflags\ngbk\nedge\n")
    caplog.set_level(logging.WARNING, logger="googlenet.detect")
    truth = load_voc(year)
    assert list(truth) == ["empty", "flags", "gbk", "edge"]
    assert truth["empty"].labels == [] and truth["flags"].difficult == [True]
    assert truth["gbk"].labels == ["猫"]
    assert truth["edge"].boxes == [(10.0, 10.0, 40.0, 45.0)]
    assert "1 object box(es)" in caplog.text and "edge.xml: object 1" in caplog.text


def test_voc_ids_are_the_listed_ones_each_once_and_images_of_any_type(tmp_path: Path) -> None:
    """Ids listed with folders stay apart (both were the stem `x`); a second listing of an id is refused
    (its detections were scored twice); an image that is not a JPEG is found by its id."""
    year = tmp_path / "VOC2012"
    for sub in ("s1", "s2"):
        _annotation(year, f"{sub}/x", "<annotation>" + _CAT + "</annotation>", listed=["s1/x", "s2/x"])
    (year / "JPEGImages").mkdir()
    (year / "JPEGImages" / "s1").mkdir()
    (year / "JPEGImages" / "s1" / "x.png").write_bytes(b"")
    truth = load_voc(year)
    assert list(truth) == ["s1/x", "s2/x"]
    images = dict(voc_images(year))
    assert images["s1/x"] == str(year / "JPEGImages" / "s1" / "x.png")
    assert images["s2/x"] == str(year / "JPEGImages" / "s2" / "x.jpg")  # none: named for the error
    (year / "ImageSets" / "Main" / "val.txt").write_text("s1/x\ns2/x\n\ns1/x\n")
    with pytest.raises(DataError, match=r"val.txt:4: 's1/x' is listed again \(first on line 1\)"):
        load_voc(year)


def test_voc_boxes_are_checked_against_the_image_as_it_is_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a <size>, a typo of 9999999 went to region warping as is (a 6.4 GiB allocation in
    `detect train`); an EXIF-turned image annotated on its stored pixels trained on other pixels, and a
    <size> of another size of the image went unseen."""
    from PIL import Image

    year = tmp_path / "VOC2012"
    (year / "JPEGImages").mkdir(parents=True)
    Image.new("RGB", (200, 100)).save(year / "JPEGImages" / "typo.jpg")
    box = _CAT.replace("<xmax>50</xmax>", "<xmax>9999999</xmax>")
    _annotation(year, "typo", "<annotation>" + box + "</annotation>")
    caplog.set_level(logging.WARNING, logger="googlenet.detect")
    assert load_voc(year)["typo"].boxes == [(10.0, 10.0, 200.0, 50.0)]
    assert "clipped to it" in caplog.text and "in 200x100" in caplog.text
    turned = Image.new("RGB", (200, 100))
    exif = turned.getexif()
    exif[0x0112] = 6  # stored 200x100, read as 100x200
    turned.save(year / "JPEGImages" / "turned.jpg", exif=exif.tobytes())
    size = "<size><width>{}</width><height>{}</height></size>"
    _annotation(year, "turned", "<annotation>" + size.format(200, 100) + _CAT + "</annotation>")
    with pytest.raises(
        DataError, match=r"turned.xml: <size> 200x100 is .*turned.jpg's stored pixels, which its EXIF"
    ):
        load_voc(year)
    _annotation(year, "turned", "<annotation>" + size.format(100, 200) + _CAT + "</annotation>")
    assert load_voc(year)["turned"].boxes == [(10.0, 10.0, 50.0, 50.0)]
    _annotation(year, "turned", "<annotation>" + size.format(400, 800) + _CAT + "</annotation>")
    with pytest.raises(
        DataError, match=r"<size> 400x800 is not the size of .*\(100x200\); annotated on another size"
    ):
        load_voc(year)


def test_pr_plots_of_classes_whose_names_escape_alike_are_kept_apart(tmp_path: Path) -> None:
    """`a/b`, `a_b` and `a b` all became pr-a_b.png, two plots lost; a 260-character name failed with
    "File name too long" after the other plots were written."""
    from googlenet.detect.command import save_pr_plots

    names = ["a/b", "a_b", "a b", "c" * 260, "猫" * 100]
    truth = _truth(*[("img1", name, (1.0, 1.0, 10.0, 10.0), False) for name in names])
    dets = [Detection("img1", name, 0.9, (1.0, 1.0, 10.0, 10.0)) for name in names]
    paths = save_pr_plots(evaluate_detections(dets, truth), str(tmp_path / "plots"))
    assert len(set(paths)) == 5 and all(Path(p).is_file() for p in paths)
    assert all(len(Path(p).name.encode()) <= 120 for p in paths)  # cut by bytes, on a character's edge
    assert "pr-a_b.png" in {Path(p).name for p in paths}  # a name that is already safe keeps it


def test_reading_voc_sizes_decodes_no_image_and_warns_of_mirrored_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The size check decoded every PNG whole (PIL's getexif on a PNG loads it: 66 ms for a 2000x1500
    photo); an orientation that mirrors or turns by 180 degrees keeps the sizes, so it is warned of."""
    from PIL import Image, PngImagePlugin

    year = tmp_path / "VOC2012"
    (year / "JPEGImages").mkdir(parents=True)
    Image.new("RGB", (200, 100)).save(year / "JPEGImages" / "png.png")
    flipped = Image.new("RGB", (200, 100))
    exif = flipped.getexif()
    exif[0x0112] = 3
    flipped.save(year / "JPEGImages" / "flipped.jpg", exif=exif.tobytes())
    _annotation(year, "png", "<annotation>" + _CAT + "</annotation>", listed=["png", "flipped"])
    _annotation(year, "flipped", "<annotation>" + _CAT + "</annotation>", listed=["png", "flipped"])

    def no_decoding(self: object) -> None:
        raise AssertionError("the PNG was decoded to read its size")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decoding)
    caplog.set_level(logging.WARNING, logger="googlenet.detect")
    assert set(load_voc(year)) == {"png", "flipped"}
    assert (
        "1 image(s) of image set 'val' carry an EXIF orientation that mirrors them or turns them by 180"
        in caplog.text
    )
    assert "flipped.jpg" in caplog.text


def test_refused_detection_flags_on_resume_are_the_ones_typed() -> None:
    """A flag typed with its default value was taken for not typed (and so ignored); one the run's setup
    records with the same value is accepted, the same file by another path too."""
    import argparse

    from googlenet.detect import pipeline

    def refused(argv: list[str], recorded: dict[str, object], tmp: Path) -> str:
        (tmp / "detection-setup.json").write_text(json.dumps(recorded))
        args = argparse.Namespace(**pipeline.DETECTION_DEFAULTS)
        given = dict(zip(argv[::2], argv[1::2], strict=True))
        for flag, value in given.items():
            name = flag.lstrip("-").replace("-", "_")
            setattr(args, name, type(pipeline.DETECTION_DEFAULTS[name] or "")(value))
        args.argv = ["detect", "train", "--resume", str(tmp), *argv]
        try:
            pipeline._refuse_changed_detection(args, tmp)
        except googlenet.ConfigError as exc:
            return str(exc)
        return ""

    import tempfile

    import googlenet

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        setup = {"annotations": str(tmp), "max_side": 300, "proposals": "quality", "positives_per_image": 5}
        assert refused(["--max-side", "500"], setup, tmp).startswith("--max-side: a resumed detect train run")
        assert refused(["--positives-per-image", "5", "--max-side", "300"], setup, tmp) == ""
        assert refused(["--annotations", str(tmp / ".")], setup, tmp) == ""
        assert refused(["--background-per-positive", "3"], setup, tmp).startswith("--background-per-positive")
