"""The torch -> ONNX exporters: parity, metadata, checkpoints, Cohen et al.'s architectures, CLI.

Parity here is checked twice: by the exporter itself (which refuses to write a file that differs
from torch beyond atol 1e-4 + rtol 1e-3 |torch|) and independently in each test, against the
torch model that *wrote* the checkpoint rather than the one the exporter rebuilt.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch", reason="the exporters need torch (the [export] extra)")
from torch import nn  # noqa: E402

from onnxcert.config import METADATA_KEYS, build_config, metadata_layer  # noqa: E402
from onnxcert.errors import OnnxCertError  # noqa: E402
from exporters import (CheckpointError, ExportError, NormalizeLayer, ParityError, check_parity,  # noqa: E402
                                export_model)
from exporters.__main__ import main as exporters_main  # noqa: E402
from exporters.checkpoint import load_checkpoint  # noqa: E402
from exporters.cohen import (DATASETS, export_cohen, get_architecture, load_cohen_checkpoint,  # noqa: E402
                                      sigma_from_path)

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
TOL = dict(rtol=1e-3, atol=1e-4)  # the exporter's default parity tolerance


def tiny_cnn(num_classes: int = 3, channels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, num_classes)).eval()


def ort_run(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]


def torch_run(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x.astype(np.float32))).numpy()


def props(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Trained-looking BatchNorm statistics, so that the running stats are exercised too."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            m.weight.data.copy_(0.5 + 0.5 * torch.rand(m.weight.shape, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.bias.shape, generator=g))


# ---------------------------------------------------------------- the generic exporter


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    model = tiny_cnn()
    path = tmp_path_factory.mktemp("small") / "small.onnx"
    result = export_model(model, path, input_shape=(3, 16, 16), mean=MEAN, std=STD,
                          classes=["cat", "dog", "bird"], sigma=0.25, opset=17)
    return model, path, result


def test_small_model_exports_with_dynamic_batch_and_opset(small_export):
    model, path, result = small_export
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert {o.domain: o.version for o in proto.opset_import}[""] == 17
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.HasField("dim_value")
    x = np.random.default_rng(1).random((5, 3, 16, 16), dtype=np.float32)  # batch 5: neither export (1) nor parity (4)
    z = (x - np.reshape(MEAN, (1, 3, 1, 1))) / np.reshape(STD, (1, 3, 1, 1))
    np.testing.assert_allclose(ort_run(path, z), torch_run(model, z), **TOL)
    assert result.parity.batch == 4 and result.parity.max_abs_diff <= 1e-4
    assert result.num_classes == 3 and result.opset == 17


def test_small_model_metadata_reads_back_with_onnx(small_export):
    _, path, _ = small_export
    meta = props(path)
    assert json.loads(meta[METADATA_KEYS["model"]]) == {
        "input": "input", "output": "logits", "output_kind": "logits", "classes": ["cat", "dog", "bird"]}
    assert json.loads(meta[METADATA_KEYS["preprocess"]]) == {
        "size": [16, 16], "resize": "exact", "crop": "none", "channels": "RGB", "layout": "NCHW",
        "mean": MEAN, "std": STD}
    assert json.loads(meta[METADATA_KEYS["smoothing"]]) == {"sigma": 0.25}
    provenance = json.loads(meta["onnxcert.export"])
    assert provenance["opset"] == 17 and provenance["parity"]["atol"] == 1e-4
    cfg = build_config(metadata_layer(meta))  # what onnxcert itself will use
    assert cfg.settings.sigma == 0.25 and cfg.preprocess.mean == tuple(MEAN)
    assert cfg.model.classes == ("cat", "dog", "bird") and cfg.preprocess.size == (16, 16)


def test_small_model_metadata_reads_back_with_onnxcert_inspect(small_export):
    from typer.testing import CliRunner

    from onnxcert.cli import app

    _, path, _ = small_export
    result = CliRunner().invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    for key in ("onnxcert.model", "onnxcert.preprocess", "onnxcert.smoothing"):
        assert props(path)[key] in result.output  # the stored JSON, shown verbatim
    assert "sigma 0.25" in result.output and "channels RGB" in result.output


def test_fold_normalization_moves_mean_and_std_into_the_graph(tmp_path, small_export):
    model, unfolded, _ = small_export
    folded = tmp_path / "folded.onnx"
    export_model(model, folded, input_shape=(3, 16, 16), mean=MEAN, std=STD, fold_normalization=True)
    pre = json.loads(props(folded)[METADATA_KEYS["preprocess"]])
    assert pre["mean"] == [0.0] and pre["std"] == [1.0]
    assert METADATA_KEYS["smoothing"] not in props(folded)  # no training sigma given
    x = np.random.default_rng(2).random((3, 3, 16, 16), dtype=np.float32)
    z = (x - np.reshape(MEAN, (1, 3, 1, 1))) / np.reshape(STD, (1, 3, 1, 1))
    np.testing.assert_allclose(ort_run(folded, x), ort_run(unfolded, z), rtol=1e-4, atol=1e-5)


def test_parity_check_detects_a_different_model(small_export):
    _, path, _ = small_export
    other = tiny_cnn()
    with torch.no_grad():
        other[-1].bias += 0.01  # one changed bias: 100x the tolerance
    x = np.random.default_rng(3).random((2, 3, 16, 16), dtype=np.float32)
    with pytest.raises(ParityError, match="disagree"):
        check_parity(other, path, x, "input", "logits")


class TracedBranch(nn.Module):
    """Takes a data-dependent branch that tracing freezes: the export diverges from torch."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x):
        logits = self.fc(x.flatten(1))
        if bool(x.min() < -0.5):  # never at export (inputs in [0, 1]); always under sigma = 0.5 noise
            return -logits
        return logits


def test_export_refuses_to_write_a_model_that_fails_parity(tmp_path):
    path = tmp_path / "branch.onnx"
    with pytest.raises(ParityError, match=r"onnxruntime and torch disagree"):
        with pytest.warns(torch.jit.TracerWarning):
            export_model(TracedBranch(), path, input_shape=(3, 4, 4), sigma=0.5)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_export_rejects_bad_settings(tmp_path):
    with pytest.raises(ExportError, match="1 channel"):
        export_model(tiny_cnn(), tmp_path / "a.onnx", input_shape=(1, 8, 8), channels="RGB")
    with pytest.raises(ExportError, match="2 class names given but the model outputs 3"):
        export_model(tiny_cnn(), tmp_path / "b.onnx", input_shape=(3, 8, 8), classes=["a", "b"])
    with pytest.raises(ExportError, match="preprocess.std must be > 0"):
        export_model(tiny_cnn(), tmp_path / "c.onnx", input_shape=(3, 8, 8), std=[0.0])
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- checkpoints and the CLI

MODULE_SOURCE = textwrap.dedent("""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, num_classes=10):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4 * 6 * 6, num_classes)

        def forward(self, x):
            return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))
""")


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_models.py").write_text(MODULE_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module("user_models")
    yield module
    import sys

    sys.modules.pop("user_models", None)


def test_cli_generic_loads_a_dataparallel_checkpoint_and_exports_it(tmp_path, user_module, capsys):
    trained = user_module.Net(num_classes=3).eval()
    randomize_batchnorm(trained)
    state = {f"module.{k}": v for k, v in trained.state_dict().items()}  # as saved from DataParallel
    torch.save({"epoch": 7, "state_dict": state}, tmp_path / "net.pt")
    out = tmp_path / "net.onnx"
    rc = exporters_main(["generic", "--module", str(tmp_path / "user_models.py"), "--factory", "Net",
                         "--kwargs", '{"num_classes": 3}', "--checkpoint", str(tmp_path / "net.pt"),
                         "--input-shape", "1,8,8", "--channels", "L", "--mean", "0.5", "--std", "0.25",
                         "--classes", "a,b,c", "--sigma", "0.5", "--opset", "18", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "parity on 4 noisy inputs" in capsys.readouterr().out
    x = (np.random.default_rng(4).random((6, 1, 8, 8), dtype=np.float32) - 0.5) / 0.25
    np.testing.assert_allclose(ort_run(out, x), torch_run(trained, x), **TOL)
    assert json.loads(props(out)[METADATA_KEYS["model"]])["classes"] == ["a", "b", "c"]
    assert json.loads(props(out)["onnxcert.export"])["checkpoint"]["file"] == "net.pt"
    assert {o.domain: o.version for o in onnx.load(str(out)).opset_import}[""] == 18


def _cli_error(capsys, argv) -> str:
    rc = exporters_main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.startswith("exporters: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_cli_errors_are_one_line(tmp_path, user_module, capsys):
    base = ["generic", "--module", "user_models", "--input-shape", "1,8,8", "--channels", "L",
            "-o", str(tmp_path / "x.onnx")]
    assert "has no class or function 'Nett' (defined there: Net)" in _cli_error(capsys, base + ["--factory", "Nett"])
    missing = str(tmp_path / "missing.pt")
    assert f"checkpoint {missing!r} does not exist" in _cli_error(
        capsys, base + ["--factory", "Net", "--checkpoint", missing])
    torch.save({"state_dict": user_module.Net(num_classes=5).state_dict()}, tmp_path / "five.pt")
    assert "has shape [5, 144], the model expects [10, 144]" in _cli_error(
        capsys, base + ["--factory", "Net", "--checkpoint", str(tmp_path / "five.pt")])
    torch.save({"state_dict": {"conv.weight": torch.zeros(4, 1, 3, 3)}}, tmp_path / "partial.pt")
    assert "missing (first: conv.bias" in _cli_error(
        capsys, base + ["--factory", "Net", "--checkpoint", str(tmp_path / "partial.pt")])
    assert "cannot import module 'no_such_models'" in _cli_error(
        capsys, ["generic", "--module", "no_such_models", "--factory", "Net", "--input-shape", "1,8,8",
                 "--channels", "L", "-o", str(tmp_path / "x.onnx")])
    (tmp_path / "exists.onnx").write_bytes(b"")
    assert "exists; pass --force" in _cli_error(
        capsys, base[:-1] + [str(tmp_path / "exists.onnx"), "--factory", "Net"])
    assert not (tmp_path / "x.onnx").exists()


def test_cli_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        exporters_main(["generic", "--module", "m", "--factory", "F", "--input-shape", "3,32", "-o", "x.onnx"])
    assert exc.value.code == 2 and "expected C,H,W" in capsys.readouterr().err


def test_weights_only_refuses_a_pickled_module(tmp_path, user_module):
    torch.save(user_module.Net(), tmp_path / "whole.pt")  # the whole module, not its state_dict
    with pytest.raises(CheckpointError, match=r"weights_only=True .*save model.state_dict\(\)"):
        load_checkpoint(tmp_path / "whole.pt")


# ---------------------------------------------------------------- Cohen et al.'s models


def cohen_checkpoint(tmp_path, arch: str, sigma: str, data_parallel: bool):
    """A checkpoint in Cohen et al.'s format, written by their model layout with random weights."""
    torch.manual_seed(1)
    model = get_architecture(arch)
    randomize_batchnorm(model)
    with torch.no_grad():
        model[1].fc.weight.mul_(0.01)  # keeps the random network's logits in a realistic range
    if data_parallel:  # their ImageNet model: Sequential(NormalizeLayer, DataParallel(resnet50))
        model = nn.Sequential(model[0], nn.DataParallel(model[1]))
    path = tmp_path / "models" / arch / f"noise_{sigma}" / "checkpoint.pth.tar"
    path.parent.mkdir(parents=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.save({"epoch": 90, "arch": arch, "state_dict": model.state_dict(),
                "optimizer": optimizer.state_dict()}, path)
    return model.eval(), path


def multiply_adds(model: nn.Module, shape) -> int:
    """Multiply-accumulates of the convolutions and linear layers for one input."""
    total = 0

    def count(m, _, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += out.numel() * m.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    torch_run(model, np.zeros((1, *shape), dtype=np.float32))
    for h in hooks:
        h.remove()
    return total


def test_cohen_architectures_match_the_published_shapes():
    """Golden values. torchvision's resnet50: 25,557,032 parameters, 320 state_dict entries and
    4.09 G multiply-adds at 224x224 (torchvision's model docs; the count pins the stride on the 3x3
    convolution, which the original ResNet v1 puts on the 1x1). The bearpaw/Cohen CIFAR ResNet-110:
    1,730,714 parameters (432 + 32 + 84,096 + 330,048 + 1,315,456 + 650, summed by layer) and the
    2.53e8 FLOPs that Li et al. 2017 (Pruning Filters for Efficient ConvNets, Table 1) report."""
    r50, r110 = get_architecture("resnet50"), get_architecture("cifar_resnet110")
    assert sum(p.numel() for p in r50[1].parameters()) == 25_557_032
    assert len(r50[1].state_dict()) == 320
    assert round(multiply_adds(r50[1], (3, 224, 224)) / 1e9, 2) == 4.09
    assert sum(p.numel() for p in r110[1].parameters()) == 1_730_714
    assert round(multiply_adds(r110[1], (3, 32, 32)) / 1e8, 2) == 2.53
    keys = r110.state_dict()
    assert "1.layer3.17.bn2.running_var" in keys and "1.layer2.0.downsample.0.weight" in keys
    assert not any(k.startswith("0.") for k in keys)  # their NormalizeLayer stores nothing


def test_cohen_resnet110_checkpoint_exports_the_exact_model(tmp_path):
    original, ckpt = cohen_checkpoint(tmp_path, "cifar_resnet110", "0.25", data_parallel=False)
    assert next(iter(original.state_dict())) == "1.conv1.weight"
    out = tmp_path / "r110.onnx"
    result = export_cohen(ckpt, out)
    meta = props(out)
    assert json.loads(meta[METADATA_KEYS["smoothing"]]) == {"sigma": 0.25}  # from noise_0.25/
    pre = json.loads(meta[METADATA_KEYS["preprocess"]])
    assert pre["size"] == [32, 32] and pre["mean"] == [0.0] and pre["std"] == [1.0]
    assert json.loads(meta[METADATA_KEYS["model"]])["classes"][:2] == ["airplane", "automobile"]
    x = np.random.default_rng(5).random((3, 3, 32, 32), dtype=np.float32)
    expected = torch_run(original, x)
    assert np.ptp(expected) > 0.1  # the logits are not degenerate, so agreement means something
    np.testing.assert_allclose(ort_run(out, x), expected, **TOL)
    assert result.parity.max_abs_diff < 1e-3


def test_cohen_unfolded_export_carries_their_normalization(tmp_path):
    original, ckpt = cohen_checkpoint(tmp_path, "cifar_resnet20", "0.50", data_parallel=False)
    out = tmp_path / "r20.onnx"
    export_cohen(ckpt, out, fold_normalization=False, sigma=0.12)
    pre = json.loads(props(out)[METADATA_KEYS["preprocess"]])
    ds = DATASETS["cifar10"]
    assert pre["mean"] == list(ds.mean) and pre["std"] == [0.2023, 0.1994, 0.2010]  # code/datasets.py
    assert json.loads(props(out)[METADATA_KEYS["smoothing"]])["sigma"] == 0.12  # explicit beats the path
    x = np.random.default_rng(6).random((2, 3, 32, 32), dtype=np.float32)
    z = (x - np.reshape(ds.mean, (1, 3, 1, 1))) / np.reshape(ds.std, (1, 3, 1, 1))
    np.testing.assert_allclose(ort_run(out, z), torch_run(original, x), **TOL)


def test_cohen_resnet50_dataparallel_checkpoint_exports_the_exact_model(tmp_path):
    original, ckpt = cohen_checkpoint(tmp_path, "resnet50", "0.50", data_parallel=True)
    assert next(iter(original.state_dict())) == "1.module.conv1.weight"
    out = tmp_path / "r50.onnx"
    export_cohen(ckpt, out, parity_batch=1)
    pre = json.loads(props(out)[METADATA_KEYS["preprocess"]])
    assert (pre["size"], pre["resize"], pre["resize_to"], pre["crop"]) == ([224, 224], "shorter", 256, "center")
    assert json.loads(props(out)[METADATA_KEYS["smoothing"]]) == {"sigma": 0.5}
    x = np.random.default_rng(7).random((1, 3, 224, 224), dtype=np.float32)
    expected = torch_run(original, x)
    assert expected.shape == (1, 1000) and np.ptp(expected) > 0.01
    np.testing.assert_allclose(ort_run(out, x), expected, **TOL)


def test_cohen_checkpoint_errors(tmp_path):
    _, ckpt = cohen_checkpoint(tmp_path, "cifar_resnet20", "0.25", data_parallel=False)
    with pytest.raises(CheckpointError, match="says arch 'cifar_resnet20', but 'cifar_resnet110'"):
        load_cohen_checkpoint(ckpt, arch="cifar_resnet110")
    bare = tmp_path / "bare.pt"
    torch.save(get_architecture("cifar_resnet20")[1].state_dict(), bare)
    with pytest.raises(CheckpointError, match="names no 'arch'"):
        load_cohen_checkpoint(bare)
    arch, model = load_cohen_checkpoint(bare, arch="cifar_resnet20")  # bare network keys load too
    assert arch == "cifar_resnet20" and isinstance(model[0], NormalizeLayer)
    with pytest.raises(CheckpointError, match="do not fit the model"):
        load_cohen_checkpoint(bare, arch="cifar_resnet110")
    wrong = tmp_path / "wrong_norm.pt"
    torch.save({"arch": "cifar_resnet20", "state_dict": {
        "0.sds": torch.tensor([0.247, 0.243, 0.261]),
        **{f"1.{k}": v for k, v in get_architecture("cifar_resnet20")[1].state_dict().items()}}}, wrong)
    with pytest.raises(CheckpointError, match="'0.sds'.*does not match"):
        load_cohen_checkpoint(wrong)


def test_cli_cohen(tmp_path, capsys):
    _, ckpt = cohen_checkpoint(tmp_path, "cifar_resnet20", "1.00", data_parallel=False)
    out = tmp_path / "r20.onnx"
    assert exporters_main(["cohen", str(ckpt), "-o", str(out), "--parity-batch", "2"]) == 0
    assert "parity on 2 noisy inputs" in capsys.readouterr().out
    assert json.loads(props(out)[METADATA_KEYS["smoothing"]]) == {"sigma": 1.0}


@pytest.mark.parametrize(("path", "sigma"), [
    ("models/cifar10/resnet110/noise_0.25/checkpoint.pth.tar", 0.25),
    ("models/imagenet/resnet50/noise_1.00/checkpoint.pth.tar", 1.0),
    ("checkpoint.pth.tar", None),
    ("noise_0.00/checkpoint.pth.tar", None),
])
def test_sigma_from_path(path, sigma):
    assert sigma_from_path(path) == sigma


def test_public_names_resolve():
    import exporters as package

    assert all(getattr(package, name) is not None for name in package.__all__)
    with pytest.raises(AttributeError):
        package.no_such_name
    assert len(set(package.__all__)) == len(package.__all__)
    assert package.export_model.__module__ == "exporters.onnx_export"


def test_export_errors_join_the_onnxcert_tree():
    assert issubclass(ExportError, OnnxCertError)
    assert issubclass(CheckpointError, ExportError) and issubclass(ParityError, ExportError)
