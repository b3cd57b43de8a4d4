"""The content split: near-duplicates on one side, each source's own folds, jolignier's label spelling."""
import cv2
import numpy as np

from maskwatch.benchmarks.accuracy.splits import FOLDS, fold_of, sha1_fold


def _scenes(folder, count: int, seed: int = 0) -> list:
    """``count`` unrelated synthetic scenes (random blocks of colour), as PNG files."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        image = cv2.resize(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), (320, 240), interpolation=cv2.INTER_NEAREST)
        paths.append(folder / f"scene{i}.png")
        cv2.imwrite(str(paths[-1]), image)
    return paths


def test_two_re_encoded_copies_of_one_image_land_on_one_side(tmp_path, sample_image):
    folder = tmp_path / "images"
    _scenes(folder, 20)
    photo = cv2.imread(str(sample_image))
    copies = []
    for quality in range(95, 40, -5):  # re-encoded copies until two fall in different folds by their bytes
        path = folder / f"copy_q{quality}.jpg"
        cv2.imwrite(str(path), cv2.resize(photo, (400, 400)) if quality % 2 else photo,
                    [cv2.IMWRITE_JPEG_QUALITY, quality])
        copies.append(path)
        if len({sha1_fold(p) for p in copies}) > 1:
            break
    assert len({sha1_fold(p) for p in copies}) > 1  # the bytes alone would split them
    assert len({fold_of(p) for p in copies}) == 1
    assert fold_of(copies[0]) in {sha1_fold(p) for p in copies}  # the group's fold is one of its members'


def test_unrelated_images_keep_the_fold_of_their_bytes(tmp_path):
    paths = _scenes(tmp_path / "images", 60, seed=1)
    assert [fold_of(p) for p in paths] == [sha1_fold(p) for p in paths]
    assert set(fold_of(p) for p in paths) == set(range(FOLDS))


def test_the_split_covers_each_source_and_jolignier_spelling_is_read(data):
    from maskwatch.benchmarks.accuracy.evaluate import voc_split

    for source in ("andrewmvd", "jolignier"):
        if not (data / source).is_dir():
            continue
        val = voc_split(data / source, "val")
        train = voc_split(data / source, "train")
        share = len(val) / (len(val) + len(train))
        assert 0.12 < share < 0.28, (source, share)
        labels = {label for a in val + train for label in a.labels}
        assert labels == {"with_mask", "without_mask", "mask_weared_incorrect"}, (source, labels)


def test_eval_scores_each_source_apart_and_pooled(data, tmp_path):
    import json

    from maskwatch.edge.cli import main

    sources = [data / "andrewmvd", data / "jolignier"]
    if not all(s.is_dir() for s in sources):
        import pytest
        pytest.skip("both scene sources (andrewmvd, jolignier) are needed")
    out = tmp_path / "eval.json"
    assert main(["eval", "--voc", *map(str, sources), "--tiling", "off", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    apart = [results[f"litert-int8-320-mask [{s.name}]"] for s in sources]
    pooled = results["litert-int8-320-mask [pooled]"]
    assert pooled["images"] == sum(r["images"] for r in apart)
    faces = [r["all"]["faces"]["positives"] for r in apart + [pooled]]
    assert faces[2] == faces[0] + faces[1]
    assert pooled["all"]["faces"]["tp"] == sum(r["all"]["faces"]["tp"] for r in apart)  # matching is per image
    assert apart[1]["all"]["ap"]["mask_weared_incorrect"] is not None  # jolignier's spelling was read
