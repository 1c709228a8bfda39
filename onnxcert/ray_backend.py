"""Certify on a Ray cluster: ``onnxcert run --backend ray``.

This is the only module that imports ray, and it does so when a Ray run starts; a local run never
imports it. A missing ray becomes a DependencyError naming the ``[ray]`` extra.

How a run is split:

- The driver (this process) prepares the run as a local run does: config, inputs, a check of the
  model. It decodes each input itself and ships it with its chunk, so workers need neither the
  input files nor a shared file system. The model's bytes go once into Ray's object store (a model
  with external tensor data must instead be readable at the same path on every node).
- Each worker is a Ray actor holding ONE onnxruntime session, opened in its constructor, that
  certifies chunks of input indices with ``pipeline.iter_records``: the code of a local run. A
  record depends only on the model, the input, the settings and the input's index (its noise comes
  from ``SeedSequence(seed, spawn_key=(index, stream))``), so the records equal a local run's.
- The driver keeps ``IN_FLIGHT_PER_WORKER`` chunks queued on every worker and yields records as
  chunks finish (``ray.wait``), out of input order; the report orders them by index.
- When the output kind is ``auto``, the first input is certified alone first, and the kind it
  decides is handed to every later chunk: a local run also decides it from its first input.

Faults: a worker that dies (a crashed process, a lost node) fails the chunks queued on it with a
RayActorError. The driver kills what is left of it, starts a new actor (Ray places it wherever
resources are free) and resubmits those chunks. A chunk returns its records only when all of them
are done, and the driver yields each index at most once, so every input is certified exactly once.
A chunk that was running on ``max_chunk_failures`` workers when they died stops the run.
"""

from __future__ import annotations

import _thread
import contextlib
import logging
import math
import os
import signal
import socket
import tempfile
import threading
from collections import deque
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from . import pipeline
from .errors import ConfigError, DependencyError, InputError, ModelError, OnnxCertError, RunInterrupted
from .scores import CertificationResult

log = logging.getLogger("onnxcert")

RAY_HINT = "ray is not installed: pip install 'onnxcert[ray]'"
IN_FLIGHT_PER_WORKER = 2  # one chunk running, one waiting: a worker never idles between chunks
CHUNK_SAMPLES = 100_000  # forward passes per chunk, about; at n = 100,000 that is one input
CHUNKS_PER_WORKER = 4  # at least, when there are enough inputs, so that workers finish together
MAX_CHUNK = 64
POLL_SECONDS = 0.5
PROBE_SECONDS = 5.0  # a TCP connect to the cluster's address, before ray.init
# ray.init itself retries for minutes; onnxcert gives up after this. Ray's calls block for up to
# 30 s each and a timeout is only seen between them, so the run ends within CONNECT_SECONDS + 30 s.
CONNECT_SECONDS = 20.0


def import_ray():
    """ray, or a DependencyError with the install hint."""
    try:
        import ray
    except ImportError:
        raise DependencyError(RAY_HINT) from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """How to run on Ray.

    ``address``: None joins the cluster named by RAY_ADDRESS (or the one ``ray start`` left on this
    machine) and otherwise starts a local Ray instance; ``"auto"`` joins the cluster ``ray start``
    started on this machine; ``"ray://HOST:PORT"`` connects with Ray Client. ``workers``: None is
    one per ``num_gpus_per_worker`` GPUs (or ``num_cpus_per_worker`` CPUs) the cluster has.
    ``device`` is the workers' (auto: cuda when they reserve GPUs, else cpu); ``threads`` their
    onnxruntime intra-op threads (default: ``num_cpus_per_worker``).
    """

    address: str | None = None
    workers: int | None = None
    num_gpus_per_worker: float = 0.0
    num_cpus_per_worker: float = 1.0
    device: str = "auto"
    threads: int | None = None
    chunk_size: int | None = None
    max_chunk_failures: int = 3

    def __post_init__(self):
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {self.workers}")
        g = self.num_gpus_per_worker
        if not (g >= 0 and math.isfinite(g)) or (g > 1 and g != int(g)):
            raise ConfigError(f"--num-gpus-per-worker must be a fraction in [0, 1] or a whole number "
                              f"of GPUs, got {g}")
        if not (self.num_cpus_per_worker >= 0 and math.isfinite(self.num_cpus_per_worker)):
            raise ConfigError(f"CPUs per worker must be >= 0, got {self.num_cpus_per_worker}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"--device must be one of auto, cpu, cuda; got {self.device!r}")
        if self.device == "cuda" and g == 0:
            raise ConfigError("--device cuda with --backend ray needs --num-gpus-per-worker > 0 "
                              "(Ray gives GPUs only to workers that reserve them)")
        if self.device == "cpu" and g > 0:
            raise ConfigError(f"--device cpu with --num-gpus-per-worker {g:g} would reserve GPUs that "
                              "no worker uses")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ConfigError(f"chunk size must be >= 1, got {self.chunk_size}")
        if self.max_chunk_failures < 1:
            raise ConfigError(f"max_chunk_failures must be >= 1, got {self.max_chunk_failures}")
        if self.address is not None and not self.address.strip():
            raise ConfigError("--address must be 'auto', 'ray://HOST:PORT' or 'HOST:PORT'; got ''")

    @property
    def worker_device(self) -> str:
        if self.device != "auto":
            return self.device
        return "cuda" if self.num_gpus_per_worker > 0 else "cpu"

    @property
    def worker_threads(self) -> int:
        return int(self.threads or max(1, round(self.num_cpus_per_worker)))


def chunk_size(todo: int, workers: int, samples_per_input: int) -> int:
    """Inputs per chunk: about CHUNK_SAMPLES forward passes, and at least CHUNKS_PER_WORKER chunks
    per worker when there are enough inputs (small chunks lose less to a dead worker)."""
    by_work = math.ceil(CHUNK_SAMPLES / max(samples_per_input, 1))
    by_balance = math.ceil(todo / (CHUNKS_PER_WORKER * workers))
    return max(1, min(by_work, by_balance, MAX_CHUNK))


# ---------------------------------------------------------------- the worker (a Ray actor)


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to rebuild the driver's run around its own session: the driver's
    RunSetup fields but its classifier (``setup``), the model, and the inputs' names and labels."""

    setup: Mapping[str, Any]
    model_path: str
    input_name: str
    output_name: str
    inputs: ChunkInputs
    threads: int


@dataclass(frozen=True)
class ChunkInputs:
    """The inputs as a worker sees them: every name and label, and the decoded inputs of one chunk
    (or the InputError the driver got decoding one, raised where a local run would raise it)."""

    source: str
    kind: str
    names: tuple
    labels: tuple
    loaded: Mapping[int, Any] = field(default_factory=dict)
    array: Any = None

    def __len__(self) -> int:
        return len(self.names)

    def load(self, i: int):
        item = self.loaded[i]
        if isinstance(item, BaseException):
            raise item
        return item


@dataclass(frozen=True)
class ChunkResult:
    """What one chunk sends back: its records (and whatever else iter_records yields, in order),
    the output kind the worker used, and where it ran."""

    items: tuple
    output_kind: str
    provider: str
    session_options: Mapping[str, Any]
    host: str


class Worker:
    """One onnxruntime session, opened once per actor; certifies chunks of inputs.

    An OnnxCertError in the constructor (no CUDA on this node, say) is kept and raised by the
    first chunk, so that it reaches the driver as itself rather than as a dead actor.
    """

    def __init__(self, spec: WorkerSpec, model_bytes: bytes | None):
        import socket

        self.host = socket.gethostname()
        self._tmp = None
        self._setup = self._error = None
        try:
            self._setup = self._open(spec, model_bytes)
            self._sampler = pipeline.make_sampler(self._setup)
        except OnnxCertError as exc:
            self._error = exc

    def _open(self, spec: WorkerSpec, model_bytes: bytes | None) -> pipeline.RunSetup:
        from .runtime import open_classifier

        path = spec.model_path
        if model_bytes is not None:
            self._tmp = tempfile.TemporaryDirectory(prefix="onnxcert-ray-")
            path = str(Path(self._tmp.name) / Path(spec.model_path).name)
            Path(path).write_bytes(model_bytes)
        clf = open_classifier(path, device=spec.setup["device"], input_name=spec.input_name,
                              output_name=spec.output_name, threads=spec.threads)
        return pipeline.RunSetup(classifier=clf, inputs=spec.inputs, **spec.setup)

    def certify(self, indices: Sequence[int], loaded: Sequence[Any], output_kind: str) -> ChunkResult:
        if self._error is not None:
            raise self._error
        if output_kind != "auto" and output_kind != self._sampler.output_kind:
            self._sampler = pipeline.make_sampler(self._setup, output_kind=output_kind)  # decided elsewhere
        s = self._setup
        setup = replace(s, inputs=replace(s.inputs, loaded=dict(zip(indices, loaded))))
        items = tuple(pipeline.iter_records(setup, self._sampler, list(indices)))
        clf = s.classifier
        return ChunkResult(items, self._sampler.output_kind, clf.provider, dict(clf.session_options), self.host)


# ---------------------------------------------------------------- the driver


@dataclass
class _Chunk:
    indices: list[int]
    payload: Any = None  # ObjectRef of the decoded inputs, put once, reused on resubmission
    failures: int = 0


@dataclass
class _Slot:
    """One worker place: its current actor and the chunks queued on it, oldest first."""

    actor: Any
    refs: deque = field(default_factory=deque)


class RayBackend:
    """Certify on a Ray cluster. ``certify`` is ``pipeline.certify`` (journal, resume, stop on
    signals included) with ``iter_records`` in place of the local loop; records come out of input
    order, and the report's provenance names the backend and its workers."""

    def __init__(self, options: RayOptions | None = None, *, worker_cls: type = Worker):
        self.options = options or RayOptions()
        self.worker_cls = worker_cls
        self.provenance: dict[str, Any] = {}
        self._run: _Run | None = None

    @property
    def provider(self) -> str:
        """The execution provider the workers run (a worker on another one fails to start), for
        the journal's identity: the driver's own session is only a check on the CPU."""
        from .runtime import CPU, CUDA

        return CUDA if self.options.worker_device == "cuda" else CPU

    def check_address(self) -> None:
        """Before any work: something must answer at the cluster's address, when one is named."""
        address = self.options.address or os.environ.get("RAY_ADDRESS")
        target = host_port(address)
        if target is not None:
            probe(address, *target)

    def certify(self, setup: pipeline.RunSetup, **kwargs) -> CertificationResult:
        """``pipeline.certify(setup, **kwargs)`` on Ray workers."""
        self._run = None
        result = pipeline.certify(setup, iterate=self.iter_records, output_kind=self._kind, **kwargs)
        result.report["provenance"].update(self.provenance)
        return result

    def _kind(self) -> str | None:
        """What the workers read the model's output as (None until a chunk decided it)."""
        return None if self._run is None else self._run.kind

    def iter_records(self, setup: pipeline.RunSetup, sampler, indices: Iterable[int] | None = None) -> Iterator:
        """Certify ``indices`` (default: every input) on Ray workers; yield each input's record once,
        as its chunk finishes. ``sampler`` is the driver's: its ``on_batch`` sees each record's
        samples, and its ``output_kind`` (configured, or from a journal) goes to the workers;
        ``_kind`` says what they decided."""
        todo = list(range(len(setup.inputs)) if indices is None else indices)
        if not todo:
            return
        ray = import_ray()
        started = self._connect(ray)
        run = None
        try:
            run = self._run = _Run(ray, setup, sampler, self.options, self.worker_cls, todo)
            self.provenance = run.provenance
            yield from run.records()
        finally:
            if run is not None:
                run.close()
            if started:
                ray.shutdown()

    def _connect(self, ray) -> bool:
        """Join or start Ray; True when this call started it (and so shuts it down)."""
        if ray.is_initialized():
            return False
        address = self.options.address
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
        if address is None:
            kwargs["include_dashboard"] = False
        where = address or os.environ.get("RAY_ADDRESS") or "a new local instance"
        target = host_port(address or os.environ.get("RAY_ADDRESS"))
        if target is not None:
            probe(where, *target)
        try:
            with _keep_signal_handlers(), bounded_connect(ray, where):
                ray.init(address=address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
            raise ConfigError(f"cannot connect to Ray at {where}: {_first_line(exc)}") from None
        return True


def host_port(address: str | None) -> tuple[str, int] | None:
    """(host, port) of 'HOST:PORT' or 'ray://HOST:PORT' ('[::1]:PORT' too); None for 'auto',
    'local', None, or anything else Ray resolves itself."""
    if not address or address in ("auto", "local"):
        return None
    text = address.removeprefix("ray://")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + SETTINGS


def probe(where: str, host: str, port: int, timeout: float = PROBE_SECONDS) -> None:
    """Is a Ray cluster (a gRPC server: Ray's GCS, or Ray Client's server) at host:port? With
    nothing there, or a server that never answers gRPC, ray.init retries for minutes in calls
    that no signal interrupts; this fails in at most about 2 x ``timeout`` seconds. An HTTP/2
    server answers the client preface with its own SETTINGS frame (RFC 9113, 3.4). With TLS
    (RAY_USE_TLS) only the TCP connection is checked."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return
            conn.sendall(HTTP2_PREFACE)
            frame = b""
            while len(frame) < 9:
                chunk = conn.recv(9 - len(frame))
                if not chunk:
                    break
                frame += chunk
    except OSError as exc:
        if isinstance(exc, socket.timeout) and "frame" in locals():
            frame = b""
        else:
            why = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or type(exc).__name__)
            raise ConfigError(f"cannot connect to Ray at {where}: nothing answers at {host}:{port} ({why}); "
                              f"start a cluster there (ray start --head --port {port}) or fix --address") from None
    if len(frame) < 9 or frame[3] != 0x04:
        raise ConfigError(f"cannot connect to Ray at {where}: the server at {host}:{port} does not answer as a "
                          "Ray cluster does (gRPC); check --address (ray status prints the right one)")


class _Abort(BaseException):
    """Raised in the main thread by a signal or the timeout while ray.init runs. A BaseException,
    so that Ray's own ``except Exception`` retry loops cannot swallow it."""


@contextlib.contextmanager
def bounded_connect(ray, where: str, timeout: float | None = None):
    """Around ray.init: give up after ``timeout`` seconds (ConfigError, exit 2), and stop at once
    on SIGINT or SIGTERM (RunInterrupted, exit 130): no input has been certified yet, so there
    is nothing to finish first. ray.init installs a SIGTERM handler that calls sys.exit(15);
    that exit is turned into the same RunInterrupted."""
    timeout = CONNECT_SECONDS if timeout is None else timeout
    state: dict[str, Any] = {"signal": None, "timed_out": False, "connecting": True}
    lock = threading.Lock()
    main = threading.current_thread() is threading.main_thread()

    def on_signal(signum, frame):
        state["signal"] = state["signal"] or signal.Signals(signum).name
        raise _Abort

    def on_timeout():
        with lock:  # never after ray.init returned: the interrupt would hit the run itself
            if state["connecting"]:
                state["timed_out"] = True
                _thread.interrupt_main()  # runs the SIGINT handler (on_signal) in the main thread

    saved = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    timer = threading.Timer(timeout, on_timeout)
    timer.daemon = True
    timer.start()
    try:
        yield
        with lock:
            state["connecting"] = False
    except (_Abort, KeyboardInterrupt, SystemExit) as exc:
        if isinstance(exc, SystemExit) and exc.code != signal.SIGTERM:
            raise
        with contextlib.suppress(Exception):
            ray.shutdown()  # whatever half of a connection ray.init made
        if state["timed_out"]:
            raise ConfigError(f"cannot connect to Ray at {where}: no answer within {timeout:g} s; is a Ray cluster "
                              "running there (ray status)?") from None
        name = state["signal"] or ("SIGTERM" if isinstance(exc, SystemExit) else "SIGINT")
        raise RunInterrupted(f"stopped by {name} while connecting to Ray at {where}; no input was certified "
                             "in this run") from None
    finally:
        with lock:
            state["connecting"] = False
        timer.cancel()
        for s, h in saved.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _keep_signal_handlers():
    """ray.init replaces the driver's SIGTERM handler with sys.exit; the run's own (a clean stop
    that keeps the journal) must stay."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in saved.items():
            if h is not None:
                signal.signal(s, h)


class _Run:
    """One run's workers, queue and bookkeeping."""

    def __init__(self, ray, setup, sampler, opts: RayOptions, worker_cls, todo: list[int]):
        from ray.exceptions import RayActorError, RayError, RayTaskError, WorkerCrashedError

        self.ray, self.setup, self.sampler, self.opts = ray, setup, sampler, opts
        self._lost_errors = (RayActorError, WorkerCrashedError)
        self._task_error, self._ray_error = RayTaskError, RayError
        self.kind = None if sampler.output_kind == "auto" else sampler.output_kind
        workers = opts.workers or self._default_workers()
        size = opts.chunk_size or chunk_size(len(todo), workers, setup.samples_per_input)
        first = [] if self.kind is not None else [[todo[0]]]
        rest = todo[len(first):]
        self.pending = deque(_Chunk(c) for c in first + [rest[i:i + size] for i in range(0, len(rest), size)])
        workers = max(1, min(workers, len(self.pending)))
        self._actor_cls = ray.remote(num_cpus=opts.num_cpus_per_worker, num_gpus=opts.num_gpus_per_worker,
                                     max_restarts=0, max_task_retries=0)(worker_cls)
        spec = _spec(setup, opts)
        self._spec_ref = ray.put(spec)
        self._model_ref = ray.put(_model_bytes(setup.classifier.info.path))
        self.slots = [_Slot(self._new_actor()) for _ in range(workers)]
        self.in_flight: dict[Any, tuple[_Chunk, _Slot]] = {}
        self.done: set[int] = set()
        self.provenance: dict[str, Any] = {
            "backend": "ray", "ray_version": ray.__version__, "ray_address": opts.address,
            "workers": workers, "num_gpus_per_worker": opts.num_gpus_per_worker,
            "num_cpus_per_worker": opts.num_cpus_per_worker, "chunk_size": size,
            "device": opts.worker_device, "workers_replaced": 0}
        log.info("ray: %d worker(s), %d chunk(s) of up to %d input(s), %s GPU and %s CPU per worker, device %s",
                 workers, len(self.pending), size, opts.num_gpus_per_worker, opts.num_cpus_per_worker, opts.worker_device)

    def _default_workers(self) -> int:
        res = self.ray.cluster_resources()
        if self.opts.num_gpus_per_worker > 0:
            have, each, what = res.get("GPU", 0), self.opts.num_gpus_per_worker, "GPU"
        else:
            have, each, what = res.get("CPU", 0), self.opts.num_cpus_per_worker, "CPU"
        if have < each:
            log.warning("the Ray cluster has %g %s now, less than one worker's %g; waiting for more",
                        have, what, each)
        return max(1, int(have // each) if each > 0 else 1)

    def _new_actor(self):
        return self._actor_cls.remote(self._spec_ref, self._model_ref)

    # -------------------------------------------------------- the loop

    def records(self) -> Iterator:
        while self.pending or self.in_flight:
            self._fill()
            if not self.in_flight:
                continue
            ready, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=POLL_SECONDS)
            for ref in ready:
                yield from self._collect(ref)
            if not ready:
                self._progress(0)

    def _progress(self, samples: int) -> None:
        """The driver's on_batch: it moves the progress bar, and may raise to stop the run (a
        signal); it is called with 0 while waiting, so a stop never waits for a chunk to end."""
        if self.sampler.on_batch is not None:
            self.sampler.on_batch(samples)

    def _fill(self) -> None:
        for slot in self.slots:
            while self.pending and len(slot.refs) < IN_FLIGHT_PER_WORKER:
                if self.kind is None and self.in_flight:
                    return  # the first input decides the output kind before anything else runs
                chunk = self.pending.popleft()
                if chunk.payload is None:
                    chunk.payload = self.ray.put([_load(self.setup.inputs, i) for i in chunk.indices])
                ref = slot.actor.certify.remote(chunk.indices, chunk.payload, self.kind or "auto")
                slot.refs.append(ref)
                self.in_flight[ref] = (chunk, slot)

    def _collect(self, ref) -> Iterator:
        chunk, slot = self.in_flight.pop(ref)
        try:
            result = self.ray.get(ref)
        except self._lost_errors as exc:
            self._replace(slot, exc, {ref: chunk})
            return
        except self._task_error as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, OnnxCertError):
                raise cause from None
            raise  # a bug in a worker: its traceback is worth seeing
        except self._ray_error as exc:  # the cluster failed (an object lost, a worker unschedulable)
            raise OnnxCertError(f"Ray failed: {_first_line(exc)}") from None
        slot.refs.remove(ref)
        chunk.payload = None
        self._check_kind(result)
        for item in result.items:
            if item.index in self.done:
                continue
            self.done.add(item.index)
            yield item
            if _is_record(item):
                self._progress(self.setup.samples_per_input)

    def _check_kind(self, result: ChunkResult) -> None:
        self.provenance.setdefault("provider", result.provider)
        self.provenance.setdefault("session_options", dict(result.session_options))
        hosts = self.provenance.setdefault("worker_hosts", [])
        if result.host not in hosts:
            hosts.append(result.host)
        if result.output_kind == "auto":  # every input of the chunk was skipped: nothing decided
            return
        if self.kind is None:
            self.kind = result.output_kind
        elif result.output_kind != self.kind:
            raise ModelError(f"Ray workers read the model's output as {self.kind} and as "
                             f"{result.output_kind}; set --output-kind")

    def _replace(self, slot: _Slot, exc: BaseException, known: Mapping) -> None:
        """The worker of ``slot`` is gone: resubmit its chunks to a new one. Its oldest chunk
        was the one running, the only one that may have killed it."""
        chunks = [known[r] if r in known else self.in_flight.pop(r)[0] for r in slot.refs]
        slot.refs.clear()
        running = chunks[0]
        running.failures += 1
        if running.failures >= self.opts.max_chunk_failures:
            raise OnnxCertError(f"inputs {_describe(self.setup, running.indices)} were running on "
                                f"{running.failures} Ray workers when they died; last: {_first_line(exc)}")
        log.warning("a Ray worker died (%s); resubmitting %d chunk(s) to a new one",
                    _first_line(exc), len(chunks))
        try:
            self.ray.kill(slot.actor, no_restart=True)
        except Exception:  # already gone
            pass
        slot.actor = self._new_actor()
        self.provenance["workers_replaced"] += 1
        self.pending.extendleft(reversed(chunks))

    def close(self) -> None:
        """Stop every worker, with whatever chunk it is running (the run is over or abandoned)."""
        self.in_flight.clear()
        for slot in self.slots:
            try:
                self.ray.kill(slot.actor, no_restart=True)
            except Exception:  # already gone
                pass


def _spec(setup: pipeline.RunSetup, opts: RayOptions) -> WorkerSpec:
    clf, items = setup.classifier, setup.inputs
    rest = {f.name: getattr(setup, f.name) for f in fields(setup) if f.name not in ("classifier", "inputs")}
    rest["device"] = opts.worker_device
    inputs = ChunkInputs(items.source, items.kind, tuple(items.names), tuple(items.labels))
    return WorkerSpec(rest, str(clf.info.path), clf.input.name, clf.output.name, inputs, opts.worker_threads)


def _model_bytes(path: str) -> bytes | None:
    """The model file's bytes, or None when it keeps tensors in external files (then every node
    must read it at ``path``)."""
    from onnx.external_data_helper import uses_external_data

    from .model_info import load_proto

    proto = load_proto(path)
    if any(uses_external_data(t) for t in proto.graph.initializer):
        log.warning("%s keeps its weights in external files: every Ray node must read it at that path", path)
        return None
    return Path(path).read_bytes()


def _load(items, i: int):
    try:
        return items.load(i)
    except InputError as exc:
        return exc


def _is_record(item) -> bool:
    return hasattr(item, "certificate")


def _describe(setup, indices: Sequence[int]) -> str:
    names = [setup.inputs.names[i] or f"#{i}" for i in indices[:3]]
    return ", ".join(names) + (f" and {len(indices) - 3} more" if len(indices) > 3 else "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."
