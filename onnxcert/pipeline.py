"""Certify a model on inputs: per input, sample -> certify -> record.

``prepare`` resolves everything once (model, config layers, inputs, preprocessing, batch size);
``iter_records`` then yields one ``Record`` per input, in input order, as soon as it is certified,
so callers can stream, resume from a subset of ``indices``, or stop between inputs.
``certify`` collects the records into a report with its provenance.
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .config import Config, build_config, merge, metadata_layer
from .errors import ConfigError, InputError
from .inputs import InputSet, load_inputs
from .preprocess import Preprocessor, check_against_model, model_layer
from .report import Record, build_report
from .runtime import Classifier, describe_model, load_proto, open_classifier, ort_version, select_input
from .sampling import Sampler, auto_batch_size
from .scores import CertificationResult
from .stats.certify import certify_samples

log = logging.getLogger("onnxcert")


@dataclass(frozen=True)
class RunSetup:
    """Everything a run needs, resolved once before the first forward pass."""

    config: Config
    classifier: Classifier
    inputs: InputSet
    preprocessor: Preprocessor
    batch_size: int
    batch_size_auto: bool
    device: str

    @property
    def samples_per_input(self) -> int:
        return self.config.settings.n0 + self.config.settings.n


def resolve_config(info, layers: Sequence[Mapping], source: str = "model metadata") -> Config:
    """Config from (lowest first) the model's input shape, its metadata_props, then ``layers``."""
    meta = metadata_layer(info.metadata, source=source)
    merged = merge(meta, *layers)
    name = merged["model"].get("input")
    inp = select_input(info, name if isinstance(name, str) else None)
    derived = model_layer(inp.shape, merged["preprocess"])
    _warn_overrides(meta, merged, source)
    return build_config(derived, meta, *layers)


def _warn_overrides(meta: Mapping, merged: Mapping, source: str) -> None:
    """A config file or flag that contradicts the model's own metadata is allowed, but said:
    mean/std from a preset on a graph that normalizes itself would normalize twice."""
    plain = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
    for section in ("model", "preprocess"):
        for key, value in (meta.get(section) or {}).items():
            final = merged[section].get(key)
            if plain(final) != plain(value):
                log.warning("%s.%s is %s, overriding %s's %s", section, key, final, source, value)


def prepare(model: str | Path, inputs: str | Path | np.ndarray, *, layers: Sequence[Mapping] = (),
            device: str = "auto", threads: int | None = None, labels=None) -> RunSetup:
    """Load the model, merge the config (CLI > file > metadata > model shape > defaults), find the
    inputs and check that preprocessing produces what the model takes."""
    proto = load_proto(model)
    info = describe_model(model, proto)
    cfg = resolve_config(info, layers, source=f"{Path(model).name} metadata")
    items = load_inputs(inputs, classes=cfg.model.classes, labels=labels)
    pre = Preprocessor(cfg.preprocess)
    clf = open_classifier(model, device=device, input_name=cfg.model.input, output_name=cfg.model.output,
                          threads=threads, proto=proto, info=info)
    k = clf.num_classes
    if k is not None:
        check_classes(cfg, items, k)
    shape = pre.sample_shape or pre.prepare(items.load(0), _name(items, 0)).shape
    check_against_model(shape, clf.input.shape, clf.input.name)
    s = cfg.settings
    batch = s.batch_size or auto_batch_size(shape, max(s.n0, s.n))
    log.info("%d input(s), sample shape %s, batch size %d%s", len(items), list(shape), batch,
             "" if s.batch_size else " (automatic)")
    return RunSetup(cfg, clf, items, pre, batch, s.batch_size is None, device)


def check_classes(cfg: Config, items: InputSet, k: int) -> None:
    """model.classes must name the k outputs; labels must lie in 0..k-1."""
    if cfg.model.classes is not None and len(cfg.model.classes) != k:
        raise ConfigError(f"model.classes lists {len(cfg.model.classes)} names but the model outputs k={k} classes")
    for i, label in enumerate(items.labels):
        if label is not None and label >= k:
            raise InputError(f"label {label} of {_name(items, i)} is outside the model's classes 0..{k - 1}")


def _name(items: InputSet, i: int) -> str:
    return items.names[i] or f"{items.source}[{i}]"


def make_sampler(setup: RunSetup, on_batch: Callable[[int], None] | None = None) -> Sampler:
    s = setup.config.settings
    return Sampler(setup.classifier, sigma=s.sigma, n0=s.n0, n=s.n, seed=s.seed, batch_size=setup.batch_size,
                   output_kind=setup.config.model.output_kind, on_batch=on_batch)


def iter_records(setup: RunSetup, sampler: Sampler, indices: Iterable[int] | None = None) -> Iterator[Record]:
    """Certify each input (all, or ``indices``) and yield its Record as soon as it is done.

    The result for input i depends only on the model, the input, the settings and i (its noise
    comes from the seed and i), so any subset, in any order, gives the same records.
    """
    s, pre, items = setup.config.settings, setup.preprocessor, setup.inputs
    labels_checked = setup.classifier.num_classes is not None
    for i in (range(len(items)) if indices is None else indices):
        name = _name(items, i)
        x = pre.prepare(items.load(i), name)
        check_against_model(x.shape, setup.classifier.input.shape, setup.classifier.input.name)
        got = sampler.sample(i, pre.normalize(x), pre.noise_scale(s.sigma, x.shape), name)
        if not labels_checked:
            check_classes(setup.config, items, got.n_classes)
            labels_checked = True
        by_name = {"score": got.score, "margin": got.margin}
        cert = certify_samples(got.prediction, {m: by_name[m] for m in s.measures}, got.votes,
                               sigma=s.sigma, alpha=s.alpha, methods=s.methods,
                               thresholds=s.thresholds, radii=s.radii)
        yield Record(i, items.names[i], items.labels[i], cert)


def certify(setup: RunSetup, *, on_batch: Callable[[int], None] | None = None,
            on_record: Callable[[Record], None] | None = None) -> CertificationResult:
    """Certify every input; the report carries the model's sha256, every setting and provenance."""
    sampler = make_sampler(setup, on_batch)
    start = time.perf_counter()
    records = []
    for rec in iter_records(setup, sampler):
        records.append(rec)
        if on_record is not None:
            on_record(rec)
    wall = time.perf_counter() - start
    return CertificationResult(tuple(records), make_report(setup, records, sampler.output_kind, wall))


def make_report(setup: RunSetup, records: Sequence[Record], output_kind: str, wall: float,
                **report_args) -> dict:
    """The report for ``records`` (see report.build_report), with the run's provenance."""
    clf, cfg = setup.classifier, setup.config
    samples = len(records) * setup.samples_per_input
    provenance = {
        "source": "run",
        "onnxruntime_version": ort_version(),
        "numpy_version": np.__version__,
        "platform": platform.platform(),
        "device": setup.device,
        "provider": clf.provider,
        "providers_requested": list(clf.providers_requested),
        "session_options": dict(clf.session_options),
        "batch_mode": clf.batch_mode,
        "batch_size_automatic": setup.batch_size_auto,
        "inputs_source": setup.inputs.source,
        "wall_time_s": round(wall, 3),
        "samples": samples,
        "samples_per_second": round(samples / wall, 1) if wall > 0 else None,
    }
    model = {"path": clf.info.path, "sha256": clf.info.sha256, "input": clf.input.name, "output": clf.output.name}
    pre = asdict(cfg.preprocess)
    pre = {k: (list(v) if isinstance(v, tuple) else v) for k, v in pre.items()}
    return build_report(cfg.settings, records, model=model, provenance=provenance, output_kind=output_kind,
                        batch_size=setup.batch_size, preprocess=pre,
                        classes=None if cfg.model.classes is None else list(cfg.model.classes), **report_args)
