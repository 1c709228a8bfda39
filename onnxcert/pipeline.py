"""Certify a model on inputs: per input, sample -> certify -> record.

``prepare`` resolves everything once (model, configuration by ``config.resolve``, inputs,
preprocessing, batch size);
``iter_records`` then yields one ``Record`` per input, in input order, as soon as it is certified
(or a ``SkippedInput`` for an image of a folder that cannot be decoded), so callers can stream,
resume from a subset of ``indices``, or stop between inputs. ``certify`` collects them into a
report with its provenance; given a journal (see ``journal``) it streams every input there,
resumes from it, and stops cleanly when ``stop_on_signals`` saw SIGINT or SIGTERM.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import platform
import signal
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .bandstore import band_requests, prepare_bands
from .config import Config, config_sections, resolve
from .errors import ConfigError, InputError, ModelError, RunInterrupted
from .inputs import InputSet, SkippedInput, load_inputs
from .limits import check_batch, check_samples
from .journal import START_OVER, JournalState, JournalWriter, TornHeader, check_identity, read_journal
from .modelcheck import output_op
from .preprocess import Preprocessor, check_against_model, model_layer, planned_size
from .preprocess_configs import classes_from_metadata
from .report import Record, build_report
from .model_info import describe_model, load_proto, select_input, select_output
from .runtime import Classifier, open_classifier, ort_version
from .sampling import BATCH_MEMORY_BUDGET, Sampler, auto_batch_size, noise_generator
from .scores import CertificationResult
from .stats.berk_jones import register_band
from .sequential import DatasetStop, SequentialRun, dataset_stop_possible, make_run, sequential_record_fields
from .stats.certify import certify_samples, prepare_methods
from .stats.sequential import certify_sequential

log = logging.getLogger("onnxcert")


@dataclass(frozen=True)
class RunSetup:
    """Everything a run needs, resolved once before the first forward pass."""

    config: Config  # settings.batch_size is resolved (never None here)
    classifier: Classifier
    inputs: InputSet
    preprocessor: Preprocessor
    batch_size_auto: bool
    device: str
    strict_inputs: bool = False
    bands: tuple = ()  # the cdf-bj bands, obtained before sampling (bandstore); travel to Ray workers
    output_op: str | None = None  # the graph's last op before the output ("Softmax": probabilities)
    sequential: SequentialRun | None = None

    @property
    def batch_size(self) -> int:
        return int(self.config.settings.batch_size or 1)

    @property
    def samples_per_input(self) -> int:
        return self.config.settings.n0 + self.config.settings.n


def with_sequential(setup: RunSetup, rules: Sequence, *, dataset_stop: bool = True) -> RunSetup:
    """``setup`` certifying in looks until each input's ``rules`` (gate.Rule) are decided
    (``run --gate RULES --sequential``); with ``dataset_stop``, the run also ends once the inputs
    certified so far settle every rule (see onnxcert.sequential)."""
    s = setup.config.settings
    if dataset_stop:
        why = dataset_stop_possible(rules)
        if why is None and any(r.min_accuracy is not None for r in rules) \
                and any(label is None for label in setup.inputs.labels):
            why = "some inputs have no label"
        if why is not None:
            log.info("the dataset-level stop is off: %s", why)
            dataset_stop = False
    run = make_run(rules, s.n, s.alpha, dataset_stop=dataset_stop)
    log.info("sequential: looks %s, each band at alpha/K = %.3g", list(run.plan.looks), run.plan.alpha_per_look)
    bands = setup.bands
    if "cdf-bj" in s.methods or any(c.method == "cdf-bj" for c in run.flat_cells):
        looks = prepare_bands([(n_k, run.plan.alpha_per_look) for n_k in run.plan.looks])
        bands = tuple({(b.n, b.alpha): b for b in (*bands, *looks.values())}.values())
    return replace(setup, sequential=run, bands=bands)


def prepare(model: str | Path, inputs: str | Path | np.ndarray, *, file: Mapping | None = None,
            cli: Mapping | Sequence[Mapping] | None = None, device: str = "auto", threads: int | None = None,
            labels=None, strict_inputs: bool = False, input_options: Mapping[str, Any] | None = None,
            skip: int | None = None, limit: int | None = None, lanes: int | None = None) -> RunSetup:
    """Load the model, resolve the configuration (``config.resolve``: ``cli`` > ``file`` > the
    model's metadata > its input shape > defaults), find the inputs, check that preprocessing
    produces what the model takes, and fix the batch size.

    Images of a folder that cannot be decoded are skipped with a warning (``iter_records``), or
    are fatal with ``strict_inputs``. ``input_options`` go to ``load_inputs`` (labels_csv,
    csv_columns, npz_keys); ``skip`` and ``limit`` select inputs (``InputSet.select``).
    ``lanes``: concurrent forward passes (``runtime.choose_lanes``; None chooses).
    """
    proto = load_proto(model)
    info = describe_model(model, proto)
    cfg = resolve_model_config(info, cli=cli, file=file, source=f"{Path(model).name} metadata")
    check_samples(cfg.settings.n)
    items = load_inputs(inputs, classes=cfg.model.classes, labels=labels, **(input_options or {}))
    items = items.select(skip, limit)
    pre = Preprocessor(cfg.preprocess)
    clf = open_classifier(model, device=device, input_name=cfg.model.input, output_name=cfg.model.output,
                          threads=threads, proto=proto, info=info, lanes=lanes)
    k = clf.num_classes
    if k is not None:
        check_classes(cfg, items, k)
    first, item = _first_input(items, strict_inputs)
    shape = pre.sample_shape or pre.prepare(item, _name(items, first)).shape
    check_against_model(shape, clf.input.shape, clf.input.name)
    largest, source = shape, ""
    if pre.sample_shape is None and items.kind != "array":  # each image keeps its own size
        largest, source = _largest_sample(items, pre, shape)
    s = cfg.settings
    if s.n < s.n0:
        log.warning("n=%d estimation samples is fewer than n0=%d selection samples: were they swapped?", s.n, s.n0)
    lanes_run = int(clf.session_options.get("lanes", 1))  # each lane holds a batch: the budget is shared
    batch = s.batch_size or auto_batch_size(largest, max(s.n0, s.n), budget=BATCH_MEMORY_BUDGET // lanes_run)
    if batch > max(s.n0, s.n):
        log.info("batch size %d is more than the %d samples an input needs: using %d", batch, max(s.n0, s.n),
                 max(s.n0, s.n))
        batch = max(s.n0, s.n)
    check_batch(batch, largest, explicit=s.batch_size is not None, source=source, lanes=lanes_run)
    log.info("%d input(s), sample shape %s, batch size %d%s", len(items), list(shape), batch,
             "" if s.batch_size else " (automatic)")
    cfg = replace(cfg, settings=replace(s, batch_size=batch))
    bands = prepare_bands(band_requests(cfg.settings))
    prepare_methods(cfg.settings.methods, cfg.settings.n, cfg.settings.alpha)
    return RunSetup(cfg, clf, items, pre, s.batch_size is None, device, strict_inputs, tuple(bands.values()),
                    output_op(proto, clf.output.name))


def resolve_model_config(info, *, cli=None, file=None, source: str = "model metadata",
                         require_sigma: bool = True) -> Config:
    """``config.resolve`` for a model: its metadata, and its input shape as the layer below."""
    def shape(merged: Mapping) -> dict:
        name = merged["model"].get("input")
        inp = select_input(info, name if isinstance(name, str) else None)
        return {**model_layer(inp.shape, merged["preprocess"]), **_named_classes(info, merged)}

    return resolve(cli=cli, file=file, metadata=info.metadata, shape=shape, source=source,
                   require_sigma=require_sigma)


def _largest_sample(items: InputSet, pre: Preprocessor, first: tuple[int, ...]) -> tuple[tuple[int, ...], str]:
    """The largest sample any image of ``items`` gives under ``pre`` (read from the image headers,
    nothing decoded) and the image that gives it: with a dynamic height and width and no fixed
    size, the batch size and the memory check must hold for the largest image, not the first."""
    from PIL import Image

    best, source = math.prod(first), ""
    shape = tuple(first)
    c = pre.n_channels
    for path in items.files:
        try:
            with Image.open(path) as img:
                w, h = img.size
        except Exception:  # noqa: BLE001  unreadable: skipped (or fatal) when it is reached
            continue
        h, w = planned_size(w, h, pre.config)
        if c * h * w > best:
            best, source = c * h * w, f"image {str(path)!r}"
            shape = (c, h, w) if pre.config.layout == "NCHW" else (h, w, c)
    return shape, source


def _named_classes(info, merged: Mapping) -> dict:
    """Class names under a common metadata key of a third-party model (``names``, ``id2label``, ...),
    in the lowest layer; ignored when they do not match the outputs' count."""
    names = classes_from_metadata(info.metadata)
    if not names:
        return {}
    try:
        out = select_output(info, merged["model"].get("output"))
        k = out.shape[-1] if out.shape else None
    except ModelError:  # the output is chosen (and its errors reported) when the model opens
        k = None
    if isinstance(k, int) and k > 0 and len(names) != k:
        log.warning("warning: the model's metadata names %d classes but it outputs %d; names ignored", len(names), k)
        return {}
    log.info("class names from the model's metadata (%d)", len(names))
    return {"model": {"classes": names}}


def _first_input(items: InputSet, strict: bool) -> tuple[int, Any]:
    """The first input that decodes, and its index; a folder whose images all fail is an InputError."""
    for i in range(len(items)):
        item = load_or_skip(items, i, strict, warn=False)  # iter_records warns when it gets there
        if not isinstance(item, SkippedInput):
            return i, item
    raise InputError(f"none of the {len(items)} image(s) in {items.source!r} can be decoded")


def load_or_skip(items: InputSet, i: int, strict: bool, warn: bool = True):
    """Input i decoded, or a SkippedInput when it is an image of a folder that fails to decode
    (InputError instead with ``strict``, and always for single images and arrays)."""
    try:
        return items.load(i)
    except InputError as exc:
        if strict or items.kind != "folder":
            raise
        if warn:
            log.warning("skipping: %s", exc)
        return SkippedInput(i, items.names[i], str(exc))


def check_classes(cfg: Config, items: InputSet, k: int) -> None:
    """model.classes must name the k outputs; labels must lie in 0..k-1."""
    if cfg.model.classes is not None and len(cfg.model.classes) != k:
        raise ConfigError(f"model.classes lists {len(cfg.model.classes)} names but the model outputs k={k} classes")
    for i, label in enumerate(items.labels):
        if label is not None and label >= k:
            raise InputError(f"label {label} of {_name(items, i)} is outside the model's classes 0..{k - 1}")


def _name(items: InputSet, i: int) -> str:
    return items.names[i] or f"{items.source}[{i}]"


def make_sampler(setup: RunSetup, on_batch: Callable[[int], None] | None = None,
                 output_kind: str | None = None) -> Sampler:
    """The run's sampler. ``output_kind``: what an earlier part of the run decided (a journal,
    another worker), instead of the configured one."""
    s = setup.config.settings
    return Sampler(setup.classifier, n0=s.n0, n=s.n, seed=s.seed, batch_size=setup.batch_size,
                   output_kind=output_kind or setup.config.model.output_kind, on_batch=on_batch)


def iter_records(setup: RunSetup, sampler: Sampler,
                 indices: Iterable[int] | None = None) -> Iterator[Record | SkippedInput]:
    """Certify each input (all, or ``indices``) and yield its Record as soon as it is done, or a
    SkippedInput for an image of a folder that cannot be decoded (see ``load_or_skip``).

    The result for input i depends only on the model, the input, the settings and i (its noise
    comes from the seed and i), so any subset, in any order, gives the same records.
    """
    s, pre, items = setup.config.settings, setup.preprocessor, setup.inputs
    for band in setup.bands:
        register_band(band)
    labels_checked = setup.classifier.num_classes is not None
    for i in (range(len(items)) if indices is None else indices):
        name = _name(items, i)
        item = load_or_skip(items, i, setup.strict_inputs)
        if isinstance(item, SkippedInput):
            yield item
            continue
        x = pre.prepare(item, name)
        check_against_model(x.shape, setup.classifier.input.shape, setup.classifier.input.name)
        x_norm = pre.normalize(x)
        clean = clean_prediction(setup.classifier, x_norm, f"input {i} ({name})")
        if setup.sequential is not None:
            record, k = _certify_in_looks(setup, sampler, i, x, name, clean)
            if not labels_checked:
                check_classes(setup.config, items, k)
                labels_checked = True
            yield record
            continue
        got = sampler.sample(i, x_norm, pre.noise_scale(s.sigma, x.shape), name)
        if not labels_checked:
            check_classes(setup.config, items, got.n_classes)
            labels_checked = True
        by_name = {"score": got.score, "margin": got.margin}
        cert = certify_samples(got.prediction, {m: by_name[m] for m in s.measures}, got.votes,
                               sigma=s.sigma, alpha=s.alpha, methods=s.methods,
                               thresholds=s.thresholds, radii=s.radii)
        yield Record(i, items.names[i], items.labels[i], cert, clean)


def clean_prediction(classifier, x_norm: np.ndarray, where: str) -> int:
    """The class of one noise-free forward pass (argmax of the scores: the same for logits and
    probabilities)."""
    rows = np.asarray(classifier(x_norm[None]))
    if not np.all(np.isfinite(rows)):
        raise ModelError(f"the model's output holds NaN or inf for {where}; no certificate is written "
                         "for it (seen on the noise-free pass)")
    return int(np.argmax(rows[0]))


def _certify_in_looks(setup: RunSetup, sampler: Sampler, i: int, x: np.ndarray, name: str,
                      clean: int | None) -> tuple[Record, int]:
    """Input i certified look by look (stats.sequential.certify_sequential), and the model's class count."""
    s, pre, run = setup.config.settings, setup.preprocessor, setup.sequential
    x_norm, scale = pre.normalize(x), pre.noise_scale(s.sigma, x.shape)
    c, k = sampler.select(i, x_norm, scale, name)
    estimate = sampler.estimation(i, x_norm, scale, c, name)

    def draw(start: int, stop: int):
        score, margin, votes = estimate(start, stop)
        by_name = {"score": score, "margin": margin}
        return {m: by_name[m] for m in s.measures}, votes

    got = certify_sequential(c, draw, plan=run.plan, cells=run.flat_cells, sigma=s.sigma, methods=s.methods,
                             thresholds=s.thresholds, radii=s.radii, stop_early=not run.to_last_look)
    extra = sequential_record_fields(got.samples, got.stopped_at_look, run.rule_decisions(got.decisions))
    return Record(i, setup.inputs.names[i], setup.inputs.labels[i], got.certificate, clean, extra), k


class StopFlag:
    """Set by ``stop_on_signals``' handler: the name of the signal that asked the run to stop."""

    def __init__(self) -> None:
        self.signal: str | None = None


class _Stopped(Exception):
    """Raised between batches once a StopFlag is set."""


@contextlib.contextmanager
def stop_on_signals(signums: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[StopFlag]:
    """While inside, SIGINT and SIGTERM set the yielded flag (``certify`` then stops after the
    current batch); a second signal stops at once. The previous handlers are restored on exit.
    Outside the main thread no handler can be installed, and the flag is never set."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.signal is not None:
            raise KeyboardInterrupt
        flag.signal = signal.Signals(signum).name
        log.warning("%s: stopping after the current batch (send it again to stop at once)", flag.signal)

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def band_algorithm() -> str:
    """The cdf-bj band's algorithm version: records certified with another one may not be mixed in."""
    from .stats.berk_jones import ALGORITHM
    return ALGORITHM


def run_identity(setup: RunSetup, provider: str | None = None) -> dict:
    """What decides a run's records; a journal may only be resumed by a run with the same.
    ``provider``: the execution provider that computes the records, when not the setup's own
    (a backend's workers)."""
    cfg, clf, items = setup.config, setup.classifier, setup.inputs
    names = json.dumps([list(items.names), list(items.labels),
                        None if items.array is None else [list(items.array.shape), str(items.array.dtype)]])
    return {
        "model": {"sha256": clf.info.sha256, "input": clf.input.name, "output": clf.output.name},
        "runtime": {"provider": provider or clf.provider},  # a GPU may compute (and draw noise) differently
        "noise_generator": noise_generator(False),  # the host noise changed in issue 17
        **({"band_algorithm": band_algorithm()} if "cdf-bj" in cfg.settings.methods else {}),
        "settings": cfg.settings.to_dict(),
        "preprocess": asdict(cfg.preprocess),
        "classes": None if cfg.model.classes is None else list(cfg.model.classes),
        "output_kind": cfg.model.output_kind,
        "strict_inputs": setup.strict_inputs,
        **({"sequential": setup.sequential.identity()} if setup.sequential is not None else {}),
        "inputs": {"source": items.source, "count": len(items),
                   "digest": hashlib.sha256(names.encode("utf-8")).hexdigest()},
    }


def open_journal(setup: RunSetup, path: str | Path, resume: bool,
                 provider: str | None = None) -> tuple[JournalWriter, JournalState | None]:
    """A new journal at ``path`` (replacing any file there once the first input is done), or,
    with ``resume`` and a journal there, that one: checked to belong to this run, and reopened
    for appending. Returns the writer and what the journal held (None when new)."""
    path = Path(path)
    identity = run_identity(setup, provider)
    if not (resume and path.exists()):
        if resume:
            log.info("no journal at %s: starting from the first input", path)
        return JournalWriter(path, identity=identity), None
    try:
        state = read_journal(path)
    except TornHeader as exc:
        log.warning("%s; starting from the first input", exc)
        return JournalWriter(path, identity=identity), None
    check_identity(state, identity)
    n = len(setup.inputs)
    if any(not 0 <= i < n for i in (*state.records, *state.skipped)):
        raise InputError(f"{str(path)!r} holds an input index outside 0..{n - 1}; {START_OVER}")
    log.info("resuming from %s: %d of %d input(s) already done", path, state.done, n)
    return JournalWriter(path, resume=state), state


def certify(setup: RunSetup, *, on_batch: Callable[[int], None] | None = None,
            on_record: Callable[[Record], None] | None = None, journal: JournalWriter | None = None,
            resumed: JournalState | None = None, stop: StopFlag | None = None,
            iterate: Callable[..., Iterable[Record | SkippedInput]] = iter_records,
            output_kind: Callable[[], str | None] | None = None,
            command: Sequence[str] | None = None) -> CertificationResult:
    """Certify every input; the report carries the model's sha256, every setting, the resolved
    configuration, the ``command`` line (when given) and provenance.

    With ``journal`` (from ``open_journal``) every finished input is appended to it, and the
    inputs ``resumed`` already holds are taken from there. When ``stop`` is set (by a signal),
    or on KeyboardInterrupt, the run stops after the current batch and raises RunInterrupted;
    the journal keeps every finished input. The caller closes the journal. ``iterate`` stands
    in for ``iter_records`` (same arguments; it may yield out of input order); when it samples
    elsewhere (a backend's workers), ``output_kind()`` says what the model output was read as
    (None: not decided yet), instead of this process's sampler.
    """
    def batch_done(count: int) -> None:
        if on_batch is not None:
            on_batch(count)
        if stop is not None and stop.signal is not None:
            raise _Stopped

    writer, state = journal, resumed
    sampler = make_sampler(setup, batch_done, output_kind=state.output_kind if state is not None else None)
    records: dict[int, Record] = dict(state.records) if state else {}
    skipped: dict[int, SkippedInput] = dict(state.skipped) if state else {}
    from_journal = set(records)
    total = len(setup.inputs)
    todo = [i for i in range(total) if i not in records and i not in skipped]

    def kind() -> str:
        return (output_kind() if output_kind is not None else None) or sampler.output_kind

    watch = _DatasetWatch(setup) if setup.sequential is not None and setup.sequential.dataset_stop else None
    end = watch.advance(records, skipped) if watch is not None else None
    start = time.perf_counter()
    try:
        items = iterate(setup, sampler, todo) if end is None else iter(())
        try:
            for item in items:
                if isinstance(item, SkippedInput):
                    skipped[item.index] = item
                    if writer is not None:
                        writer.skipped(item)
                else:
                    records[item.index] = item
                    if writer is not None:
                        writer.record(item, kind())
                    if on_record is not None:
                        on_record(item)
                if watch is not None and (end := watch.advance(records, skipped)) is not None:
                    break
                if stop is not None and stop.signal is not None and len(records) + len(skipped) < total:
                    raise _Stopped
        finally:
            getattr(items, "close", lambda: None)()
    except (_Stopped, KeyboardInterrupt) as exc:
        if writer is None and isinstance(exc, KeyboardInterrupt):
            raise
        raise _interrupted(stop, len(records) + len(skipped), total, writer) from None
    wall = time.perf_counter() - start
    unevaluated: list[int] = []
    if end is not None and end < total:  # the gate was settled by inputs 0 .. end - 1
        log.info("gate decided after %d of %d inputs: the other %d are left unevaluated", end, total, total - end)
        records = {i: r for i, r in records.items() if i < end}
        skipped = {i: k for i, k in skipped.items() if i < end}
        unevaluated = list(range(end, total))
    if not records:
        raise InputError(f"no input could be certified: all {len(skipped)} were skipped")
    ordered = [records[i] for i in sorted(records)]
    fresh = [r for r in ordered if r.index not in from_journal]
    report = make_report(setup, ordered, kind(), wall, skipped=[skipped[i] for i in sorted(skipped)],
                         fresh=len(fresh), sampling_path=_path_of(sampler), command=command,
                         unevaluated=unevaluated, samples=_samples(setup, fresh))
    return CertificationResult(tuple(ordered), report)


class _DatasetWatch:
    """Feeds finished inputs to a DatasetStop in index order (so a Ray run, whose inputs finish out
    of order, and a resumed run stop where a local run does)."""

    def __init__(self, setup: RunSetup):
        self.stop = DatasetStop(setup.sequential.rules, setup.config.settings.thresholds, len(setup.inputs))
        self.next = 0

    def advance(self, records: Mapping[int, Record], skipped: Mapping[int, SkippedInput]) -> int | None:
        """The number of leading inputs that settle the gate, once they do; else None."""
        while self.next in records or self.next in skipped:
            self.stop.add(records.get(self.next))
            self.next += 1
            if self.stop.decided:
                return self.next
        return None


def _samples(setup: RunSetup, fresh: Sequence[Record]) -> int:
    """Forward passes spent on ``fresh``: n0 + n each, or n0 + the samples a sequential input drew."""
    n0 = setup.config.settings.n0
    return sum(n0 + (r.sequential["samples"] if r.sequential else setup.config.settings.n) for r in fresh)


def _interrupted(stop: StopFlag | None, done: int, total: int, writer: JournalWriter | None) -> RunInterrupted:
    why = f"stopped by {stop.signal}" if stop is not None and stop.signal else "interrupted"
    if writer is None or done == 0:
        return RunInterrupted(f"{why}: {done} of {total} input(s) done" + (", not kept (no journal)" if done else ""))
    return RunInterrupted(f"{why}: {done} of {total} input(s) done, kept in {str(writer.path)!r}; "
                          "run the same command with --resume to continue")


def _path_of(sampler) -> dict | None:
    path = getattr(sampler, "path", None)
    if path is None:
        return None
    return {"device_noise": path.device_noise, "prefetch": getattr(sampler, "prefetch", path.prefetch),
            "reason": path.reason, "noise_generator": noise_generator(path.device_noise)}


def make_report(setup: RunSetup, records: Sequence[Record], output_kind: str, wall: float,
                skipped: Sequence[SkippedInput] = (), fresh: int | None = None,
                sampling_path: dict | None = None, unevaluated: Sequence[int] = (), samples: int | None = None,
                **report_args) -> dict:
    """The report for ``records`` (see report.build_report), with the run's provenance and the
    inputs that were skipped. ``fresh``: how many records this session computed (the rest came
    from a journal); samples and throughput count only those (``samples``: their forward passes,
    when not n0 + n each). A sequential run adds ``settings.sequential`` and ``unevaluated``."""
    clf, cfg = setup.classifier, setup.config
    fresh = len(records) if fresh is None else fresh
    samples = fresh * setup.samples_per_input if samples is None else samples
    if setup.sequential is not None:
        report_args["sequential"] = setup.sequential.settings()
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
        "inputs_found": len(setup.inputs),
        "records_from_journal": len(records) - fresh,
        "wall_time_s": round(wall, 3),
        "samples": samples,
        "samples_per_second": round(samples / wall, 1) if wall > 0 else None,
        "sampling_path": sampling_path,
        "noise_generator": (sampling_path or {}).get("noise_generator", noise_generator(False)),
    }
    model = {"path": clf.info.path, "sha256": clf.info.sha256, "input": clf.input.name, "output": clf.output.name}
    pre = asdict(cfg.preprocess)
    pre = {k: (list(v) if isinstance(v, tuple) else v) for k, v in pre.items()}
    report = build_report(cfg.settings, records, model=model, provenance=provenance, output_kind=output_kind,
                          config=config_sections(cfg), preprocess=pre,
                          classes=None if cfg.model.classes is None else list(cfg.model.classes), **report_args)
    folders = getattr(setup.inputs, "unreadable", ())  # sub-folders that could not be listed
    report["skipped"] = [s.to_dict() for s in (*folders, *skipped)]
    if setup.sequential is not None:
        report["unevaluated"] = list(unevaluated)
    return report
