"""Collector settings: discovery, tailing, decoding, multiline, checkpoints."""

from __future__ import annotations

import dataclasses
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from podlog.config import setting

__all__ = ["DEFAULT_HOST_FILES", "CollectorConfig"]


DEFAULT_HOST_FILES = [
    "/var/log/syslog",
    "/var/log/messages",
    "/var/log/kern.log",
    "/var/log/auth.log",
    "/var/log/kube-apiserver.log",
    "/var/log/kube-scheduler.log",
    "/var/log/kube-controller-manager.log",
]
"""The host files read by default once ``host_files_enabled`` is set."""


@dataclasses.dataclass(frozen=True, slots=True)
class CollectorConfig:
    """What the collector reads and how."""

    include: list[str] = setting(
        ["/var/log/containers/*.log"], "Glob patterns of log files to read; symlinks are followed."
    )
    exclude: list[str] = setting([], "Glob patterns of files never to read.")
    read_from: str = setting(
        "head", "Where to start in files that exist on the very first start: head or tail."
    )
    exclude_self: bool = setting(
        True,
        "Skip the agent's own container logs ($POD_NAMESPACE/$POD_NAME) so it never reads itself.",
    )
    scan_interval_seconds: float = setting(
        1.0, "Period of the stat pass that discovers new, rotated and deleted files."
    )
    poll_interval_seconds: float = setting(
        0.2, "How often idle files are checked for growth when no inotify hint arrives."
    )
    use_inotify: bool = setting(
        True, "Use inotify (watchdog) events as low-latency hints besides the stat pass."
    )
    rotate_wait_seconds: float = setting(
        5.0, "How long a rotated or deleted file keeps being read after its end is reached."
    )
    read_chunk_bytes: int = setting(262144, "Bytes read from a file per read call.")
    read_budget_bytes: int = setting(
        1048576, "Bytes read from one file per round before the next file gets its turn."
    )
    max_line_bytes: int = setting(
        262144, "Longest line kept; longer lines are truncated and marked log.truncated."
    )
    batch_max_records: int = setting(
        2048, "Records per batch handed to the spool; a round also ends a batch."
    )
    queue_batches: int = setting(
        2, "Batches buffered between reading and the spool; when full, reading pauses."
    )
    multiline: str = setting(
        "none", "Default multiline rule: none, java, python, go, or a start-of-event regex."
    )
    multiline_flush_seconds: float = setting(
        1.0, "A multiline event with no new line for this long is emitted as it is."
    )
    multiline_max_lines: int = setting(
        500, "Most lines merged into one multiline event before it is emitted."
    )
    checkpoint_interval_seconds: float = setting(
        1.0, "How often acknowledged offsets are written to the checkpoint file."
    )
    gc_gen0_threshold: int = setting(
        100000,
        "Python GC gen-0 threshold set at start (the startup heap is also frozen); above the "
        "objects of the records in flight, so batches do not trigger collections; 0 leaves "
        "the process GC alone.",
    )
    max_open_files: int = setting(
        4096, "Most files held open at once; new files wait until others close."
    )
    journal_enabled: bool = setting(
        False, "Read the node's journald journal (kubelet, container runtime, kernel) beside the files."
    )
    journal_directory: str = setting(
        "",
        "Journal directory read with journalctl --directory (in a DaemonSet: the host's "
        "/var/log/journal/<machine-id>); empty: the journal journalctl finds by itself.",
    )
    journal_matches: list[str] = setting(
        [
            "_SYSTEMD_UNIT=kubelet.service",
            "_SYSTEMD_UNIT=containerd.service",
            "_SYSTEMD_UNIT=docker.service",
            "_TRANSPORT=kernel",
        ],
        "Journal entries to read, any of these: each item is one or more FIELD=value matches "
        "(separated by spaces, all must hold); empty: every entry.",
    )
    journalctl_command: str = setting(
        "journalctl", "The journalctl program run (and restarted with backoff) to read the journal."
    )
    journal_max_entry_bytes: int = setting(
        67108864,
        "Longest journalctl output line (one entry as JSON) read; a longer one is skipped and "
        "counted (line_too_long). Messages are cut at max_line_bytes.",
    )
    journal_restart_max_seconds: float = setting(
        30.0, "Longest wait before journalctl is started again after it ended or failed to start."
    )
    host_files_enabled: bool = setting(
        False, "Read the node's own log files (host_files) beside the containers', as log.source file."
    )
    host_files: list[str] = setting(
        DEFAULT_HOST_FILES,
        "Glob patterns of node log files (syslog, kernel, auth, kubeadm control-plane logs); "
        "rotated generations are followed by inode, as container files are.",
    )
    host_files_timezone: str = setting(
        "UTC", "Time zone of year-less syslog timestamps in host files: UTC or an IANA name."
    )
    host_files_multiline: dict[str, str] = setting(
        {},
        "Multiline rule per host file glob (none, java, python, go, or a start-of-event regex); "
        "files matched by none use multiline.",
    )

    def __post_init__(self) -> None:
        if self.host_files_timezone not in ("", "UTC", "utc"):
            try:
                ZoneInfo(self.host_files_timezone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(
                    f"host_files_timezone {self.host_files_timezone!r} is not a known time zone "
                    "(UTC or an IANA name such as Europe/Berlin)"
                ) from exc
