"""The kernel's network counters that explain a latency tail: drops, retransmits, probes.

Why: on loopback a request is never lost on a wire, yet a run with 1,000 connections can
show single requests waiting 0.2-6 s. Those are TCP retransmission timeouts (200 ms minimum,
doubling on each retry) after the kernel dropped a packet at the per-CPU input queue
(``/proc/net/softnet_stat`` column 2, bounded by ``net.core.netdev_max_backlog``) or at a
full listen queue. Tail-loss probes (``TCPLossProbes``) answered by a D-SACK are harmless:
the data had arrived and only its ACK was late (delayed ACK). Recording these per run tells
a server's stall from the kernel's (docs/benchmarks.md, "Stalls with 1,000 connections").
"""

from __future__ import annotations

from pathlib import Path

# (file, section prefix, field) -> the name reported.
_NETSTAT_FIELDS = {
    ("Tcp", "RetransSegs"): "tcp_retransmits",
    ("TcpExt", "TCPLossProbes"): "tail_loss_probes",
    ("TcpExt", "TCPDSACKRecv"): "dsack_received",
    ("TcpExt", "ListenOverflows"): "listen_overflows",
    ("TcpExt", "ListenDrops"): "listen_drops",
    ("TcpExt", "TCPTimeouts"): "tcp_timeouts",
}


def _sections(path: Path) -> dict[tuple[str, str], int]:
    """``/proc/net/snmp`` and ``netstat`` hold pairs of lines: names, then values."""
    out: dict[tuple[str, str], int] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        section, _, keys = names.partition(":")
        for key, value in zip(keys.split(), values.partition(":")[2].split(), strict=False):
            try:
                out[(section, key)] = int(value)
            except ValueError:
                continue
    return out


def snapshot() -> dict[str, int]:
    """The counters now (missing files or fields read as 0)."""
    raw = _sections(Path("/proc/net/snmp")) | _sections(Path("/proc/net/netstat"))
    out = {name: raw.get(key, 0) for key, name in _NETSTAT_FIELDS.items()}
    dropped = 0
    try:
        for line in Path("/proc/net/softnet_stat").read_text().splitlines():
            dropped += int(line.split()[1], 16)
    except (OSError, IndexError, ValueError):
        pass
    out["softnet_dropped"] = dropped
    return out


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """What moved between two snapshots (zeros left out)."""
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
