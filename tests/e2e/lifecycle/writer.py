"""A kubelet-faithful container log writer: numbered lines into a fake node root, with ground truth.

Layout, as a DaemonSet sees the node (``root`` stands for ``/``)::

    CRI (containerd)
      var/log/pods/<ns>_<pod>_<uid>/<container>/<restart>.log              the runtime writes it
      var/log/containers/<pod>_<ns>_<container>-<64 hex id>.log -> ^       kubelet's symlink
    Docker json-file (cri-dockerd)
      var/lib/docker/containers/<id>/<id>-json.log                         dockerd writes it
      var/log/pods/<ns>_<pod>_<uid>/<container>/<restart>.log -> ^
      var/log/containers/<pod>_<ns>_<container>-<id>.log -> the pods path

Rotation, each as its owner does it:

* kubelet (``pkg/kubelet/logs/container_log_manager.go`` ``rotateLog``), CRI,
  when the live file reaches ``max_size``: delete the oldest rotated files
  beyond ``max_files - 2`` (``removeExcessLogs``); gzip every rotated file
  not compressed yet to ``X.tmp``, rename it to ``X.gz``, unlink ``X``
  (``compressLog``); rename ``N.log`` to ``N.log.<YYYYMMDD-HHMMSS>``
  (``rotateLatestLog``; the second is bumped so names stay unique and sort
  in order); then the runtime reopens a new ``N.log``, which on ext4 often
  gets the inode the unlink just freed.  Until the reopen, the runtime's
  descriptor still writes into the renamed file (a few lines, sometimes).
  The newest rotated file stays uncompressed.
* dockerd (``daemon/logger/loggerutils/logfile.go`` ``rotate``), checked on
  every entry written: unlink ``.<max_files-1>[.gz]``, shift ``.i`` to
  ``.i+1``, rename ``-json.log`` to ``.1``, create a new ``-json.log``; with
  compression a goroutine then writes ``.1.gz`` and unlinks ``.1`` (here a
  few ticks later; the next rotation waits for it, as ``rotateMu`` does).
* copytruncate (logrotate with ``copytruncate compress delaycompress``) for
  about a tenth of the files, either format: shift ``.i.gz`` up, rename ``.1``
  to ``.2``, copy the live file to ``.1``, truncate it in place, gzip ``.2``.

Lifecycle: containers restart (new restart count, new container id, new
``containers/`` link; the dead one's link and files removed by kubelet's GC a
few seconds later), exit (last lines, then nothing), pods come and go (a
deleted pod's containers stop, then its directory, links and Docker
directories are removed), and one pod writes ten times the others' rate.

Every line carries its id (``lc:<run>/<pod>/<container>/<seq> ...``); the
writer records its stream, on-disk bytes, the file generations its pieces
went to and a digest of the text a collector should deliver, and follows
each generation through renames, compression, copies and deletion
(:meth:`NodeWriter.truth`, checked against the disk by :meth:`NodeWriter.verify`).

Deterministic: the same seed and base time write the same bytes.  The caller
drives it, one :meth:`NodeWriter.step` per tick, and paces the ticks.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import heapq
import os
import random
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from tests.e2e.lifecycle.formats import MAX_PIECE_BYTES, Entries, cri_entries, docker_entries, piece_text
from tests.e2e.lifecycle.truth import GenerationTruth, GroundTruth, LineTruth, Storage, message_digest

__all__ = ["Format", "NodeWriter", "WriterConfig"]

Format = Literal["cri", "docker"]

_NAMESPACES = ("default", "shop", "payments", "kube-system")
_APPS = ("web", "api", "worker", "cart", "auth", "search", "billing", "mailer")
_WORDS = (
    "GET", "POST", "/api/v1/orders", "/healthz", "200", "404", "503", "latency_ms=12", "user=42",
    "ok", "retry", "cache", "miss", "db", "query", "took", "3ms", "kafka", "commit", "offset=991",
    "level=info", "level=warn", "request_id=9f1c", "span=ab12", "connection", "reset", "by", "peer",
)  # fmt: skip
_SPICE = (
    "é", "日本", "🚀", "ß", "<b>", "a&b", '"quoted"', "back\\slash", "tab\there", "Ωmega",
    '{"k":1}', "naïve café", "Ελληνικά", "✓", "x<y>z",
)  # fmt: skip
_LONG_UNITS = ("日本語のログ", "é🚀ab", "αβγ—", "x日🚀é", "żółć ")
"""Long lines repeat one of these: mostly multi-byte, so a 16384-byte cut often falls inside a character."""


@dataclass(frozen=True, slots=True)
class WriterConfig:
    """What the node runs and how its logs rotate."""

    seed: int = 1
    """Everything random (names, sizes, schedule) comes from this."""
    format: Format = "cri"
    """cri (containerd, kubelet rotates) or docker (json-file, dockerd rotates)."""
    pods: int = 8
    """Ordinary pods at the start; one noisy pod comes on top."""
    lines_per_second: float = 200.0
    """Lines per second of all ordinary pods together (the noisy pod adds its own)."""
    noisy_factor: float = 10.0
    """The noisy pod's rate, in ordinary pods."""
    tick_seconds: float = 0.1
    """Logical time per :meth:`NodeWriter.step` (timestamps and rotation names follow it)."""
    max_size: int = 256 * 1024
    """kubelet containerLogMaxSize / dockerd max-size / the logrotate size."""
    max_files: int = 5
    """kubelet containerLogMaxFiles / dockerd max-file / logrotate rotate + 1: the live file included."""
    copytruncate_fraction: float = 0.1
    """Share of containers whose file logrotate manages with copytruncate."""
    sidecar_fraction: float = 0.25
    """Share of pods with a second container."""
    stderr_fraction: float = 0.3
    """Share of lines written to stderr."""
    long_line_fraction: float = 0.005
    """Share of lines longer than 16 KiB (cut into pieces)."""
    long_line_max_bytes: int = 64 * 1024
    """Longest line written."""
    spice_fraction: float = 0.25
    """Share of lines with non-ASCII or JSON-escaped characters."""
    restarts_per_minute: float = 4.0
    """Container restarts on the node per minute."""
    exits_per_minute: float = 1.5
    """Containers that exit for good per minute."""
    pod_creations_per_minute: float = 3.0
    """New pods per minute."""
    pod_deletions_per_minute: float = 3.0
    """Deleted pods per minute."""
    rotation_race_fraction: float = 0.3
    """kubelet rotations where the runtime writes into the renamed file before it reopens."""
    dead_containers_kept: int = 0
    """Dead instances kubelet's GC keeps per container (kubelet's default is 1)."""
    gc_delay_seconds: tuple[float, float] = (2.0, 6.0)
    """A dead container's link and files are removed this long after it died."""
    pod_removal_delay_seconds: tuple[float, float] = (1.0, 3.0)
    """A deleted pod's files are removed this long after its containers stopped."""
    docker_compress: bool = True
    """dockerd's ``compress`` log option (``.1`` becomes ``.1.gz`` right after a rotation)."""
    docker_compress_delay_ticks: int = 3
    """The compression goroutine finishes up to this many ticks after the rotation."""

    @property
    def quiet_seconds(self) -> float:
        """Time after the last lifecycle event until every delayed removal has happened."""
        return max(self.gc_delay_seconds[1], self.pod_removal_delay_seconds[1]) + 1.0


class Generation:
    """One inode's content from creation (or truncation) on; followed through renames and compression."""

    __slots__ = (
        "born_tick", "compressed", "copied", "deleted", "end_tick", "gen_id", "hasher", "inode", "named_until_tick",
        "nbytes", "path", "stream",
    )  # fmt: skip

    def __init__(self, gen_id: int, stream: str, path: Path, inode: int, born_tick: int) -> None:
        self.gen_id = gen_id
        self.stream = stream
        self.path = path
        self.inode = inode
        self.born_tick = born_tick
        self.named_until_tick: int | None = None
        """When its ``containers/`` link stopped leading to it (renamed, truncated, link removed)."""
        self.end_tick: int | None = None
        """When its plain name went (gzip'ed, deleted) or its inode was truncated after a copy."""
        self.compressed = False
        self.deleted = False
        self.copied = False
        self.nbytes = 0
        self.hasher = hashlib.blake2b(digest_size=16)

    def add(self, data: bytes) -> None:
        self.nbytes += len(data)
        self.hasher.update(data)

    def unname(self, tick: int) -> None:
        if self.named_until_tick is None:
            self.named_until_tick = tick

    def end(self, tick: int) -> None:
        self.unname(tick)
        if self.end_tick is None:
            self.end_tick = tick


@dataclass(eq=False)
class Pod:
    namespace: str
    name: str
    uid: str
    directory: Path
    noisy: bool = False
    containers: list[Container] = field(default_factory=list)
    deleting: bool = False
    removed: bool = False


@dataclass(eq=False)
class Container:
    """A container of a pod, across its restarts: one stream key, one sequence of lines."""

    pod: Pod
    name: str
    rate: float
    copytruncate: bool
    seq: int = 0
    restarts: int = 0
    exited: bool = False
    carry: float = 0.0
    current: Instance | None = None
    dead: list[Instance] = field(default_factory=list)
    """Stopped instances kubelet's GC has not scheduled for removal yet."""
    instances: list[Instance] = field(default_factory=list)
    """Every instance ever started."""

    @property
    def stream(self) -> str:
        return f"{self.pod.uid}/{self.name}"


@dataclass(eq=False)
class Instance:
    """One run of a container (one restart count): its file, rotated files and links."""

    container: Container
    restart: int
    container_id: str
    live_path: Path
    link: Path
    pods_link: Path | None
    fd: int
    live: Generation
    size: int = 0
    rotated: list[Generation] = field(default_factory=list)
    """kubelet: oldest first (sorted names); dockerd and copytruncate: ``.1`` first."""
    running: bool = True
    pending_compress: Generation | None = None
    last_stamp: int = 0
    removed: bool = False


class NodeWriter:
    """The node's container logs: pods, containers, files, rotation, and the ground truth of it all."""

    def __init__(self, root: Path, config: WriterConfig, base_time_ns: int) -> None:
        self.root = root
        self.config = config
        self.base_time_ns = base_time_ns
        self.run_id = f"s{config.seed}"
        self.rng = random.Random(config.seed)
        self.tick = 0
        self.stats: Counter[str] = Counter()
        self.pods: list[Pod] = []
        self.containers: list[Container] = []
        self.generations: dict[int, Generation] = {}
        self.lines: dict[str, LineTruth] = {}
        self._names: set[str] = set()
        self._scheduled: list[tuple[int, int, Callable[[], None]]] = []
        self._order = 0
        self._freed_inodes: set[int] = set()
        self._clock_ns = 0
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self.containers_dir.mkdir(parents=True, exist_ok=True)
        if config.format == "docker":
            self.docker_dir.mkdir(parents=True, exist_ok=True)
        self._pod_rate = config.lines_per_second / max(config.pods, 1)
        self._add_pod(noisy=True)
        for _ in range(config.pods):
            self._add_pod()

    # -- layout ------------------------------------------------------------------

    @property
    def pods_dir(self) -> Path:
        return self.root / "var" / "log" / "pods"

    @property
    def containers_dir(self) -> Path:
        return self.root / "var" / "log" / "containers"

    @property
    def docker_dir(self) -> Path:
        return self.root / "var" / "lib" / "docker" / "containers"

    @property
    def include_glob(self) -> str:
        """What a DaemonSet's collector reads: ``/var/log/containers/*.log``."""
        return str(self.containers_dir / "*.log")

    # -- driving -----------------------------------------------------------------

    def step(self, *, events: bool = True) -> None:
        """One tick: due removals and compressions, lifecycle events (when ``events``), writes, rotations."""
        self._clock_ns = 0
        self._run_due()
        if events:
            self._lifecycle_events()
        for container in self.containers:
            instance = container.current
            if instance is None or not instance.running:
                continue
            container.carry += container.rate * self.config.tick_seconds * (0.5 + self.rng.random())
            count = int(container.carry)
            container.carry -= count
            if count:
                self._write_lines(instance, count)
        for container in self.containers:
            instance = container.current
            if instance is None or not instance.running or instance.size < self.config.max_size:
                continue
            if container.copytruncate:
                self._copytruncate(instance)
            elif self.config.format == "cri":
                self._kubelet_rotate(instance)
        self.tick += 1

    def finish(self) -> None:
        """Run what is still scheduled (removals, compressions) and close every file."""
        while self._scheduled:
            _, _, action = heapq.heappop(self._scheduled)
            action()
        for container in self.containers:
            if container.current is not None and container.current.running:
                self._stop(container.current)

    def close(self) -> None:
        """Close the files still open, leaving everything else as it is (after a failure)."""
        for container in self.containers:
            if container.current is not None and container.current.running:
                os.close(container.current.fd)
                container.current.running = False

    # -- ground truth ------------------------------------------------------------

    def truth(self, up: Sequence[tuple[int, int | None]], find_ticks: int = 1, checkpoint_ticks: int = 1,
              now_tick: int | None = None) -> GroundTruth:
        """The ground truth; ``up`` are the ticks the collector ran ``[from, to)`` (None: until ``now_tick``).

        ``find_ticks``, ``checkpoint_ticks``: how fast a collector surely finds
        files and checkpoints them (see :meth:`GroundTruth.surely_seen`);
        ``now_tick``: when the collector stopped (the writer's tick when None),
        the end of the drain, past the last write.
        """
        out = GroundTruth(
            run_id=self.run_id, lines=dict(self.lines), up=tuple(up), find_ticks=find_ticks,
            checkpoint_ticks=checkpoint_ticks, now_tick=self.tick if now_tick is None else now_tick,
        )  # fmt: skip
        for gen in self.generations.values():
            storage = Storage.DELETED if gen.deleted else Storage.GZ if gen.compressed else Storage.PLAIN
            out.generations[gen.gen_id] = GenerationTruth(
                gen_id=gen.gen_id, path=str(gen.path), storage=storage, born_tick=gen.born_tick,
                named_until_tick=gen.named_until_tick, end_tick=gen.end_tick, copied=gen.copied,
            )
        return out

    def verify(self) -> list[str]:
        """Problems with the ground truth: every kept generation's bytes where it says, and no stray files."""
        problems: list[str] = []
        expected: set[Path] = set()
        kept = [gen for gen in self.generations.values() if not gen.deleted]
        expected.update(gen.path for gen in kept)
        for gen in self.generations.values():  # a deleted generation's name may hold a newer one now
            if gen.deleted and gen.path not in expected and gen.path.exists():
                problems.append(f"generation {gen.gen_id} deleted but {gen.path} exists")
        for gen in kept:
            try:
                data = gzip.decompress(gen.path.read_bytes()) if gen.compressed else gen.path.read_bytes()
            except OSError as exc:
                problems.append(f"generation {gen.gen_id} unreadable at {gen.path}: {exc}")
                continue
            if len(data) != gen.nbytes or hashlib.blake2b(data, digest_size=16).digest() != gen.hasher.digest():
                problems.append(f"generation {gen.gen_id} at {gen.path}: {len(data)} bytes, expected {gen.nbytes}")
        for directory in (self.pods_dir, self.docker_dir):
            for path in directory.rglob("*") if directory.exists() else ():
                if path.is_file() and not path.is_symlink() and path not in expected:
                    problems.append(f"stray file {path}")
        return problems

    # -- pods and containers -------------------------------------------------------

    def _unique(self, make: Callable[[], str]) -> str:
        while True:
            name = make()
            if name not in self._names:
                self._names.add(name)
                return name

    def _hex(self, digits: int) -> str:
        return f"{self.rng.getrandbits(4 * digits):0{digits}x}"

    def _add_pod(self, *, noisy: bool = False) -> Pod:
        rng = self.rng
        alphabet = "bcdfghjklmnpqrstvwxz2456789"
        app = "noisy" if noisy else rng.choice(_APPS)
        name = self._unique(lambda: f"{app}-{self._hex(9)}-{''.join(rng.choice(alphabet) for _ in range(5))}")
        namespace = rng.choice(_NAMESPACES)
        uid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        pod = Pod(namespace, name, uid, self.pods_dir / f"{namespace}_{name}_{uid}", noisy=noisy)
        rate = self._pod_rate * (self.config.noisy_factor if noisy else 1.0)
        names = ["app", "sidecar"] if not noisy and rng.random() < self.config.sidecar_fraction else ["app"]
        shares = {"app": 0.7, "sidecar": 0.3} if len(names) == 2 else {"app": 1.0}
        for container_name in names:
            container = Container(
                pod, container_name, rate * shares[container_name],
                copytruncate=rng.random() < self.config.copytruncate_fraction,
            )
            pod.containers.append(container)
            self.containers.append(container)
            container.current = self._start_instance(container)
            container.instances.append(container.current)
        self.pods.append(pod)
        self.stats["pods_created"] += 1
        return pod

    def _start_instance(self, container: Container) -> Instance:
        """The runtime starts the container (creating its log file), then kubelet links it."""
        pod = container.pod
        container_id = self._hex(64)
        restart = container.restarts
        pods_path = pod.directory / container.name / f"{restart}.log"
        pods_path.parent.mkdir(parents=True, exist_ok=True)
        link = self.containers_dir / f"{pod.name}_{pod.namespace}_{container.name}-{container_id}.log"
        if self.config.format == "docker":
            live_path = self.docker_dir / container_id / f"{container_id}-json.log"
            live_path.parent.mkdir(parents=True)
            fd, live = self._create(container.stream, live_path)
            pods_path.symlink_to(live_path)
            pods_link: Path | None = pods_path
        else:
            live_path = pods_path
            fd, live = self._create(container.stream, live_path)
            pods_link = None
        link.symlink_to(pods_path)
        return Instance(container, restart, container_id, live_path, link, pods_link, fd, live)

    def _stop(self, instance: Instance) -> None:
        """The container stops: dockerd waits for a running compression; the file is closed."""
        if instance.pending_compress is not None:
            self._compress(instance.pending_compress, via_tmp=False)
            instance.pending_compress = None
        os.close(instance.fd)
        instance.running = False

    def _restart(self, container: Container) -> None:
        old = container.current
        assert old is not None
        self._stop(old)
        container.dead.append(old)
        container.restarts += 1
        container.current = self._start_instance(container)
        container.instances.append(container.current)
        self.stats["restarts"] += 1
        while len(container.dead) > self.config.dead_containers_kept:
            victim = container.dead.pop(0)
            self._schedule(self.config.gc_delay_seconds, functools.partial(self._remove_instance, victim))

    def _exit(self, container: Container) -> None:
        assert container.current is not None
        self._write_lines(container.current, self.rng.randint(1, 5))
        self._stop(container.current)
        container.exited = True
        self.stats["exits"] += 1

    def _delete_pod(self, pod: Pod) -> None:
        pod.deleting = True
        for container in pod.containers:
            if container.current is not None and container.current.running:
                self._write_lines(container.current, self.rng.randint(1, 5))
                self._stop(container.current)
        self.stats["pods_deleted"] += 1
        self._schedule(self.config.pod_removal_delay_seconds, functools.partial(self._remove_pod, pod))

    def _remove_instance(self, instance: Instance) -> None:
        """kubelet's container GC: the ``containers/`` link, then ``<restart>.log*``; dockerd removes its directory."""
        if instance.removed:
            return
        instance.removed = True
        instance.link.unlink(missing_ok=True)
        instance.live.unname(self.tick)
        for gen in [instance.live, *instance.rotated]:
            self._delete(gen)
        if instance.pods_link is not None:
            instance.pods_link.unlink(missing_ok=True)
            shutil.rmtree(instance.live_path.parent, ignore_errors=True)

    def _remove_pod(self, pod: Pod) -> None:
        for container in pod.containers:
            for instance in container.instances:
                self._remove_instance(instance)
        shutil.rmtree(pod.directory, ignore_errors=True)
        pod.removed = True

    def _lifecycle_events(self) -> None:
        config, rng = self.config, self.rng
        per_tick = config.tick_seconds / 60.0
        live_pods = [p for p in self.pods if not p.deleting]
        running = [c for p in live_pods for c in p.containers if c.current is not None and c.current.running]
        if running and rng.random() < config.restarts_per_minute * per_tick:
            self._restart(rng.choice(running))
        quiet = [c for c in running if not c.pod.noisy and c.current is not None and c.current.running]
        if quiet and rng.random() < config.exits_per_minute * per_tick:
            self._exit(rng.choice(quiet))
        if rng.random() < config.pod_creations_per_minute * per_tick:
            self._add_pod()
        deletable = [p for p in live_pods if not p.noisy]
        if deletable and rng.random() < config.pod_deletions_per_minute * per_tick:
            self._delete_pod(rng.choice(deletable))

    def _schedule(self, delay_seconds: tuple[float, float], action: Callable[[], None]) -> None:
        ticks = max(1, round(self.rng.uniform(*delay_seconds) / self.config.tick_seconds))
        self._schedule_at(self.tick + ticks, action)

    def _schedule_at(self, tick: int, action: Callable[[], None]) -> None:
        self._order += 1
        heapq.heappush(self._scheduled, (tick, self._order, action))

    def _run_due(self) -> None:
        while self._scheduled and self._scheduled[0][0] <= self.tick:
            _, _, action = heapq.heappop(self._scheduled)
            action()

    # -- files ---------------------------------------------------------------------

    def _create(self, stream: str, path: Path, *, truncate: bool = False) -> tuple[int, Generation]:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if truncate else 0)
        fd = os.open(path, flags, 0o640)
        inode = os.fstat(fd).st_ino
        if inode in self._freed_inodes:
            self.stats["inode_reused"] += 1
            self._freed_inodes.discard(inode)
        return fd, self._generation(stream, path, inode)

    def _generation(self, stream: str, path: Path, inode: int) -> Generation:
        gen = Generation(len(self.generations) + 1, stream, path, inode, self.tick)
        self.generations[gen.gen_id] = gen
        return gen

    def _unlink(self, path: Path, inode: int | None) -> None:
        path.unlink()
        if inode is not None:
            self._freed_inodes.add(inode)

    def _delete(self, gen: Generation) -> None:
        if gen.deleted:
            return
        self._unlink(gen.path, None if gen.compressed else gen.inode)
        gen.deleted = True
        gen.end(self.tick)
        self.stats["files_deleted"] += 1

    def _compress(self, gen: Generation, *, via_tmp: bool) -> None:
        """gzip ``X`` (kubelet: to ``X.tmp``, renamed to ``X.gz``; dockerd and logrotate: to ``X.gz``), unlink ``X``."""
        target = gen.path.with_name(gen.path.name + ".gz")
        written = gen.path.with_name(gen.path.name + ".tmp") if via_tmp else target
        with (
            gen.path.open("rb") as plain,
            written.open("wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed,
        ):
            shutil.copyfileobj(plain, packed)
        if via_tmp:
            written.rename(target)
        self._unlink(gen.path, gen.inode)
        gen.path = target
        gen.compressed = True
        gen.end(self.tick)
        self.stats["compressions"] += 1

    def _kubelet_rotate(self, instance: Instance) -> None:
        """``rotateLog``: removeExcessLogs, compressLog each uncompressed one, rotateLatestLog, reopen."""
        keep = max(self.config.max_files - 2, 0)
        while len(instance.rotated) > keep:
            self._delete(instance.rotated.pop(0))
        for gen in instance.rotated:
            if not gen.compressed:
                self._compress(gen, via_tmp=True)
        second = (self.base_time_ns // 1_000_000_000) + int(self.tick * self.config.tick_seconds)
        instance.last_stamp = max(second, instance.last_stamp + 1)
        stamp = datetime.fromtimestamp(instance.last_stamp, tz=UTC).strftime("%Y%m%d-%H%M%S")
        rotated = instance.live_path.with_name(f"{instance.live_path.name}.{stamp}")
        instance.live_path.rename(rotated)
        old = instance.live
        old.path = rotated
        old.unname(self.tick)
        if self.rng.random() < self.config.rotation_race_fraction:
            # The runtime has not reopened yet: its descriptor writes into the renamed file.
            race = self.rng.randint(1, 3)
            self._write_lines(instance, race)
            self.stats["lines_written_after_rename"] += race
        os.close(instance.fd)
        instance.fd, instance.live = self._create(instance.container.stream, instance.live_path)
        instance.size = 0
        instance.rotated.append(old)
        self.stats["rotations"] += 1

    def _docker_name(self, instance: Instance, suffix: int, compressed: bool) -> Path:
        return instance.live_path.with_name(f"{instance.live_path.name}.{suffix}{'.gz' if compressed else ''}")

    def _shift(self, instance: Instance) -> None:
        """Drop the oldest beyond ``max_files - 1`` rotated files and rename ``.i`` to ``.i+1``, oldest first."""
        while len(instance.rotated) >= self.config.max_files - 1:
            self._delete(instance.rotated.pop())
        for index in reversed(range(len(instance.rotated))):
            gen = instance.rotated[index]
            target = self._docker_name(instance, index + 2, gen.compressed)
            gen.path.rename(target)
            gen.path = target

    def _docker_rotate(self, instance: Instance) -> None:
        """dockerd's ``rotate``: close, shift, rename to ``.1``, create anew; compress ``.1`` soon after."""
        if instance.pending_compress is not None:  # rotateMu: the previous compression finishes first
            self._compress(instance.pending_compress, via_tmp=False)
            instance.pending_compress = None
        os.close(instance.fd)
        self._shift(instance)
        first = self._docker_name(instance, 1, False)
        instance.live_path.rename(first)
        old = instance.live
        old.path = first
        old.unname(self.tick)
        instance.fd, instance.live = self._create(instance.container.stream, instance.live_path, truncate=True)
        instance.size = 0
        instance.rotated.insert(0, old)
        self.stats["rotations"] += 1
        if self.config.docker_compress and self.config.max_files > 1:
            instance.pending_compress = old

            def compress_later(instance: Instance = instance, gen: Generation = old) -> None:
                if instance.pending_compress is gen:
                    self._compress(gen, via_tmp=False)
                    instance.pending_compress = None

            self._schedule_at(self.tick + self.rng.randint(0, self.config.docker_compress_delay_ticks), compress_later)

    def _copytruncate(self, instance: Instance) -> None:
        """logrotate ``copytruncate compress delaycompress``: shift, copy to ``.1``, truncate, gzip ``.2``."""
        self._shift(instance)
        copy = self._docker_name(instance, 1, False)
        shutil.copyfile(instance.live_path, copy)
        old = instance.live
        old.path = copy
        old.copied = True
        old.end(self.tick)
        os.truncate(instance.live_path, 0)
        instance.live = self._generation(instance.container.stream, instance.live_path, old.inode)
        instance.size = 0
        instance.rotated.insert(0, old)
        if len(instance.rotated) > 1 and not instance.rotated[1].compressed:
            self._compress(instance.rotated[1], via_tmp=False)
        self.stats["copytruncates"] += 1

    # -- lines -----------------------------------------------------------------------

    def _now_ns(self, advance: int) -> int:
        now = self.base_time_ns + round(self.tick * self.config.tick_seconds * 1e9) + self._clock_ns
        self._clock_ns += advance
        return now

    def _message(self, line_id: str, stream: str) -> str:
        rng, config = self.rng, self.config
        head = f"lc:{line_id} {stream} "
        if rng.random() < config.long_line_fraction:
            return self._long_message(head)
        words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 40))]
        if rng.random() < config.spice_fraction:
            for _ in range(rng.randint(1, 3)):
                words.insert(rng.randrange(len(words) + 1), rng.choice(_SPICE))
        return head + " ".join(words)

    def _long_message(self, head: str) -> str:
        rng = self.rng
        pick = rng.random()
        size = (
            MAX_PIECE_BYTES if pick < 0.1
            else 2 * MAX_PIECE_BYTES if pick < 0.2
            else MAX_PIECE_BYTES + 1 if pick < 0.25
            else rng.randint(MAX_PIECE_BYTES + 2, self.config.long_line_max_bytes)
        )  # fmt: skip
        unit = rng.choice(_LONG_UNITS)
        units = (size - len(head.encode())) // len(unit.encode())
        text = head + unit * units
        text += "x" * (size - len(text.encode()))
        raw = text.encode()
        self.stats["long_lines"] += 1
        self.stats["cut_characters"] += sum(
            1 for at in range(MAX_PIECE_BYTES, len(raw), MAX_PIECE_BYTES) if 0x80 <= raw[at] <= 0xBF
        )
        return text

    def _entries(self, message: str, stream: str) -> Entries:
        raw = message.encode()
        pieces = max(1, -(-len(raw) // MAX_PIECE_BYTES))
        if self.config.format == "cri":
            return cri_entries(raw, stream, self._now_ns(pieces * 1000))
        return docker_entries(raw, stream, self._now_ns(1000))

    def _write_lines(self, instance: Instance, count: int) -> None:
        container = instance.container
        docker_rotates = self.config.format == "docker" and not container.copytruncate
        pending: list[bytes] = []

        def flush() -> None:
            if pending:
                os.write(instance.fd, b"".join(pending))
                pending.clear()

        for _ in range(count):
            seq = container.seq
            container.seq += 1
            line_id = f"{self.run_id}/{container.pod.name}/{container.name}/{seq}"
            stream = "stderr" if self.rng.random() < self.config.stderr_fraction else "stdout"
            entries = self._entries(self._message(line_id, stream), stream)
            gens: list[int] = []
            parts: list[list[bytes]] = []
            for data in entries.data:
                if docker_rotates and instance.size >= self.config.max_size:
                    flush()
                    self._docker_rotate(instance)
                pending.append(data)
                instance.size += len(data)
                instance.live.add(data)
                if not gens or gens[-1] != instance.live.gen_id:
                    gens.append(instance.live.gen_id)
                    parts.append([])
                parts[-1].append(data)
            digests: tuple[tuple[int, int, bytes], ...] = ()
            if len(gens) > 1:
                self.stats["lines_split_by_rotation"] += 1
                docker = self.config.format == "docker"
                texts = [b"".join(piece_text(d, docker=docker) for d in part) for part in parts]
                digests = tuple(
                    (start, stop, message_digest(b"".join(texts[start:stop]).decode("utf-8", "replace")))
                    for start in range(len(texts)) for stop in range(start + 1, len(texts) + 1)
                    if stop - start < len(texts)
                )
            disk = sum(len(data) for data in entries.data)
            self.lines[line_id] = LineTruth(
                stream=container.stream, seq=seq, tick=self.tick, gens=tuple(gens), disk_bytes=disk,
                framing=disk - len(entries.text.encode()), digest=message_digest(entries.text),
                fffd=entries.text.count("\ufffd"), parts=digests,
                gen_bytes=tuple(sum(len(data) for data in part) for part in parts) if len(gens) > 1 else (),
            )
        flush()
        self.stats["lines"] += count

    def describe(self) -> dict[str, Any]:
        """The writer's counters, for a scenario's report."""
        return dict(sorted(self.stats.items()))
