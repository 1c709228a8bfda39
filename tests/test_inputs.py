"""inputs.py: image folders, labels from sub-folders and labels.csv, .npy/.npz, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onnxcert.errors import InputError
from onnxcert.inputs import load_inputs


def _img(path: Path, color=(10, 20, 30), size=(5, 4), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), color, np.uint8)).save(path, format=fmt)
    return path


def test_folder_is_recursive_sorted_and_filtered(tmp_path):
    for rel in ["b/2.png", "a/10.jpg", "a/9.JPEG", "c/x/deep.bmp", "top.webp", "t.tiff", "notes.txt"]:
        if rel.endswith(".txt"):
            (tmp_path / rel).write_text("not an image")
        else:
            _img(tmp_path / rel)
    items = load_inputs(tmp_path)
    rel = [Path(n).relative_to(tmp_path).as_posix() for n in items.names]
    assert rel == ["a/10.jpg", "a/9.JPEG", "b/2.png", "c/x/deep.bmp", "t.tiff", "top.webp"]
    assert items.labels == (None,) * 6  # not every image sits in an immediate sub-folder


def test_labels_from_integer_sub_folders(tmp_path):
    _img(tmp_path / "3" / "a.png")
    _img(tmp_path / "0" / "b.png")
    items = load_inputs(tmp_path)
    assert items.labels == (0, 3)


def test_labels_from_class_names(tmp_path):
    _img(tmp_path / "dog" / "a.png")
    _img(tmp_path / "cat" / "b.png")
    assert load_inputs(tmp_path, classes=["cat", "dog"]).labels == (0, 1)
    with pytest.raises(InputError, match="label 'dog'.*model.classes \\(cat, cow\\)"):
        load_inputs(tmp_path, classes=["cat", "cow"])
    with pytest.raises(InputError, match="label 'cat'.*integer"):
        load_inputs(tmp_path)


def test_integer_label_outside_classes(tmp_path):
    _img(tmp_path / "7" / "a.png")
    with pytest.raises(InputError, match="label 7.*0..1"):
        load_inputs(tmp_path, classes=["cat", "dog"])


def test_labels_csv_overrides_sub_folders(tmp_path):
    _img(tmp_path / "0" / "a.png")
    _img(tmp_path / "0" / "b.png")
    _img(tmp_path / "0" / "c.png")
    (tmp_path / "labels.csv").write_text("file,label\n0/a.png,2\n0/b.png,dog\n")
    items = load_inputs(tmp_path, classes=["cat", "x", "y", "dog"])
    assert items.labels == (2, 3, None)


@pytest.mark.parametrize("csv, message", [
    ("0/zzz.png,1\n", "'0/zzz.png', which is not an image"),
    ("0/a.png\n", "row 1 must be 'file,label'"),
    ("0/a.png,-1\n", "label -1 .* must be >= 0"),
])
def test_bad_labels_csv(tmp_path, csv, message):
    _img(tmp_path / "0" / "a.png")
    (tmp_path / "labels.csv").write_text(csv)
    with pytest.raises(InputError, match=message):
        load_inputs(tmp_path)


def test_missing_empty_and_imageless(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_inputs(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="is empty"):
        load_inputs(tmp_path / "empty")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    with pytest.raises(InputError, match="holds no images"):
        load_inputs(tmp_path / "docs")


def test_corrupt_image_names_the_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    items = load_inputs(tmp_path)
    with pytest.raises(InputError, match="bad.png.*cannot be decoded"):
        items.load(0)


def test_single_image(tmp_path):
    items = load_inputs(_img(tmp_path / "one.png", color=(255, 0, 0)))
    assert len(items) == 1 and items.labels == (None,)
    assert np.asarray(items.load(0))[0, 0].tolist() == [255, 0, 0]


def test_npy_and_npz(tmp_path):
    x = np.random.default_rng(0).random((4, 3, 2, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    items = load_inputs(tmp_path / "x.npy")
    assert len(items) == 4 and items.names == (None,) * 4 and not items.has_labels
    np.testing.assert_array_equal(items.load(2), x[2])
    np.savez(tmp_path / "xy.npz", x=x, y=np.array([0, 1, 1, 0]))
    assert load_inputs(tmp_path / "xy.npz").labels == (0, 1, 1, 0)
    np.savez(tmp_path / "names.npz", x=x, y=np.array(["b", "a", "a", "b"]))
    assert load_inputs(tmp_path / "names.npz", classes=["a", "b"]).labels == (1, 0, 0, 1)


def test_uint8_arrays_are_read_as_0_to_255(tmp_path):
    np.save(tmp_path / "u8.npy", np.array([[[0, 51, 255]]], np.uint8))
    np.testing.assert_allclose(load_inputs(tmp_path / "u8.npy").load(0), [[0.0, 0.2, 1.0]], rtol=1e-6)


@pytest.mark.parametrize("x, message", [
    (np.full((2, 3), 255.0), r"\[0, 1\].*\[255, 255\]"),
    (np.array([[0.5, np.nan]]), r"\[0, 1\]"),
    (np.zeros((0, 3)), "no inputs"),
    (np.zeros(3), r"\[N, \.\.\.\]"),
    (np.zeros((2, 3), np.int64), "uint8"),
])
def test_bad_arrays(tmp_path, x, message):
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(InputError, match=message):
        load_inputs(tmp_path / "x.npy")


def test_npz_without_x_and_mismatched_y(tmp_path):
    np.savez(tmp_path / "a.npz", images=np.zeros((2, 3)))
    with pytest.raises(InputError, match="no 'x' array.*images"):
        load_inputs(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", x=np.zeros((2, 3)), y=np.array([1, 2, 3]))
    with pytest.raises(InputError, match=r"shape \[2\]"):
        load_inputs(tmp_path / "b.npz")


def test_unknown_input_kind(tmp_path):
    (tmp_path / "data.txt").write_text("1,2,3")
    with pytest.raises(InputError, match="not a folder, an image"):
        load_inputs(tmp_path / "data.txt")
