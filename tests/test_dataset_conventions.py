"""Dataset conventions: labels CSVs with chosen columns, npz key names, class names from a model's
metadata, and a warning when a folder gives no labels (saying why)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onnxcert.errors import InputError
from onnxcert.inputs import load_inputs
from onnxcert.preprocess_configs import classes_from_metadata


def _img(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 5, 3), 99, np.uint8)).save(path)
    return path


@pytest.fixture
def warnings_seen(caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("onnxcert"), "propagate", True)
    caplog.set_level(logging.INFO, logger="onnxcert")
    return lambda: [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_csv_with_chosen_columns_by_name_and_index(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        _img(tmp_path / "imgs" / name)
    csv = tmp_path / "val.csv"
    csv.write_text("id,ImageId,split,TrueLabel\n1,a,val,cat\n2,b.png,val,2\n3,zzz,val,1\n")
    items = load_inputs(tmp_path / "imgs", labels_csv=csv, csv_columns=("ImageId", "TrueLabel"),
                        classes=["cat", "dog", "cow"])
    assert items.labels == (0, 2, None)  # 'a' matches a.png by its stem; 'zzz' is not in the folder
    assert items.label_source == str(csv)
    (tmp_path / "plain.csv").write_text("c.png,1\na.png,0\n")
    by_index = load_inputs(tmp_path / "imgs", labels_csv=tmp_path / "plain.csv", csv_columns=("0", "1"))
    assert by_index.labels == (0, None, 1)


def test_csv_errors_name_the_problem(tmp_path):
    _img(tmp_path / "imgs" / "a.png")
    csv = tmp_path / "l.csv"
    csv.write_text("file,cls\na.png,1\n")
    with pytest.raises(InputError, match="no column 'label' \\(header: file, cls\\)"):
        load_inputs(tmp_path / "imgs", labels_csv=csv, csv_columns=("file", "label"))
    with pytest.raises(InputError, match="labels CSV .*missing.csv' does not exist"):
        load_inputs(tmp_path / "imgs", labels_csv=tmp_path / "missing.csv")
    csv.write_text("a.png\n")
    with pytest.raises(InputError, match="row 1 has 1 column"):
        load_inputs(tmp_path / "imgs", labels_csv=csv, csv_columns=("0", "1"))
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(InputError, match="applies to a folder"):
        load_inputs(tmp_path / "x.npy", labels_csv=csv)


def test_labels_csv_in_the_folder_may_have_more_columns(tmp_path):
    _img(tmp_path / "a.png")
    _img(tmp_path / "b.png")
    (tmp_path / "labels.csv").write_text("label,note,file\n1,x,b.png\n0,y,a.png\n")
    assert load_inputs(tmp_path).labels == (0, 1)


def test_npz_key_names(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((3, 3, 4, 4), np.float32), targets=np.array([0, 2, 1]))
    items = load_inputs(tmp_path / "d.npz", npz_keys=("images", "targets"))
    assert len(items) == 3 and items.labels == (0, 2, 1)
    assert load_inputs(tmp_path / "d.npz", npz_keys=("images",)).labels == (None,) * 3
    with pytest.raises(InputError, match="no 'x' array \\(found: images, targets\\).*--npz-keys"):
        load_inputs(tmp_path / "d.npz")
    with pytest.raises(InputError, match="no 'y_test' array"):
        load_inputs(tmp_path / "d.npz", npz_keys=("images", "y_test"))


def test_sub_folder_mapping_is_recorded(tmp_path):
    _img(tmp_path / "dog" / "a.png")
    _img(tmp_path / "cat" / "b.png")
    _img(tmp_path / "cat" / "c.png")
    items = load_inputs(tmp_path, classes=["cat", "dog"])
    assert items.folders == (("cat", 0), ("dog", 1))
    assert items.label_source == "sub-folders"


@pytest.mark.parametrize("layout, expect", [
    (["a.png", "b.png"], "sit directly in it; put each class in its own sub-folder or add labels.csv"),
    (["train/0/a.png", "train/1/b.png"], "one level too deep for class sub-folders; pass '{root}/train'"),
    (["a.png", "0/b.png", "1/x/c.png"], "1 directly in it, 1 in nested sub-folders"),
])
def test_a_folder_without_labels_warns_why(tmp_path, warnings_seen, layout, expect):
    for rel in layout:
        _img(tmp_path / rel)
    items = load_inputs(tmp_path)
    assert not items.has_labels
    lines = [w for w in warnings_seen() if "no labels" in w]
    assert len(lines) == 1 and expect.format(root=tmp_path) in lines[0], lines


def test_labelled_folder_does_not_warn(tmp_path, warnings_seen):
    _img(tmp_path / "0" / "a.png")
    _img(tmp_path / "1" / "b.png")
    load_inputs(tmp_path)
    assert not [w for w in warnings_seen() if "no labels" in w]


@pytest.mark.parametrize("props, expect", [
    ({"names": "{0: 'person', 1: 'bicycle'}"}, ["person", "bicycle"]),  # a Python dict literal
    ({"id2label": '{"1": "dog", "0": "cat"}'}, ["cat", "dog"]),
    ({"classes": '["a", "b", "c"]'}, ["a", "b", "c"]),
    ({"class_names": "x, y"}, ["x", "y"]),
    ({"author": "me"}, None),
])
def test_class_names_from_common_metadata_keys(props, expect):
    assert classes_from_metadata(props) == expect


def test_class_names_with_gaps_are_ignored_with_a_warning(warnings_seen):
    assert classes_from_metadata({"id2label": '{"0": "a", "2": "c"}'}) is None
    assert any("every index 0..1" in w for w in warnings_seen())


def test_run_uses_a_third_party_models_class_names(tmp_path):
    """Class names under 'names' reach the labels of a folder; a count mismatch is ignored."""
    from onnxcert.pipeline import prepare
    from tests.onnx_models import channel_means

    model = channel_means(tmp_path / "m.onnx", metadata={"names": "{0: 'red', 1: 'green', 2: 'blue'}"})
    _img(tmp_path / "in" / "green" / "a.png")
    setup = prepare(model, tmp_path / "in", cli={"smoothing": {"sigma": 0.25}}, device="cpu")
    assert setup.config.model.classes == ("red", "green", "blue")
    assert setup.inputs.labels == (1,)
    wrong = channel_means(tmp_path / "w.onnx", metadata={"names": "['a', 'b']"})
    assert prepare(wrong, tmp_path / "in" / "green", cli={"smoothing": {"sigma": 0.25}},
                   device="cpu").config.model.classes is None
