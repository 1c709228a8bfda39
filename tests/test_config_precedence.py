"""The one precedence, CLI > config file > model metadata > model shape > defaults, as a table.

Every row sets a key in some of the four layers (each layer holds its own value) and expects
the value of the highest layer that sets it, or the default when none does. All 16 subsets of
the layers are checked for keys of every section.
"""

from __future__ import annotations

import itertools
import json

import pytest

from onnxcert.config import METADATA_KEYS, resolve

LAYERS = ("shape", "metadata", "file", "cli")  # lowest first

# section, key, default, the value each layer sets (in LAYERS order), how to read it back
KEYS = [
    ("smoothing", "n", 100_000, (11, 22, 33, 44), lambda c: c.settings.n),
    ("smoothing", "sigma", None, (0.1, 0.2, 0.3, 0.4), lambda c: c.settings.sigma),
    ("smoothing", "batch_size", None, (5, 6, 7, 8), lambda c: c.settings.batch_size),
    ("preprocess", "size", None, ([8, 8], [16, 16], [24, 24], [32, 32]),
     lambda c: None if c.preprocess.size is None else list(c.preprocess.size)),
    ("preprocess", "layout", "NCHW", ("NHWC", "NCHW", "NHWC", "NCHW"), lambda c: c.preprocess.layout),
    ("model", "output_kind", "auto", ("logits", "probabilities", "logits", "probabilities"),
     lambda c: c.model.output_kind),
    ("certify", "radii", [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5], ([0.1], [0.2], [0.3], [0.4]),
     lambda c: list(c.settings.radii)),
]

ROWS = [(key, present) for key in KEYS for r in range(len(LAYERS) + 1)
        for present in itertools.combinations(LAYERS, r)]


def _layers(section: str, key: str, values, present) -> dict:
    given = {layer: {section: {key: values[i]}} for i, layer in enumerate(LAYERS) if layer in present}
    metadata = {METADATA_KEYS[section]: json.dumps(given["metadata"][section])} if "metadata" in given else None
    return {"shape": given.get("shape"), "metadata": metadata, "file": given.get("file"), "cli": given.get("cli")}


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r[0][0]}.{r[0][1]}<-{'+'.join(r[1]) or 'defaults'}")
def test_the_highest_layer_that_sets_a_key_wins(row):
    (section, key, default, values, read), present = row
    layers = _layers(section, key, values, present)
    cfg = resolve(**layers, require_sigma=False)
    want = values[max(LAYERS.index(p) for p in present)] if present else default
    assert read(cfg) == want


def test_the_shape_layer_may_depend_on_the_layers_above_it():
    seen = []

    def shape(merged):
        seen.append(merged["preprocess"].get("layout"))
        return {"preprocess": {"size": [4, 4]}}

    cfg = resolve(cli={"preprocess": {"layout": "NHWC"}}, file={"preprocess": {"layout": "NCHW"}}, shape=shape,
                  require_sigma=False)
    assert seen == ["NHWC"] and cfg.preprocess.size == (4, 4) and cfg.preprocess.layout == "NHWC"


def test_several_cli_layers_stack_lowest_first_and_sigma_is_required_by_default():
    cfg = resolve(cli=[{"smoothing": {"sigma": 0.5, "n": 10}}, {"smoothing": {"n": 20}}])
    assert (cfg.settings.sigma, cfg.settings.n) == (0.5, 20)
    from onnxcert.errors import ConfigError

    with pytest.raises(ConfigError, match="sigma is required"):
        resolve(file={"smoothing": {"n": 10}})
