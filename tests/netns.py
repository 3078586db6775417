"""Several "hosts" on one Linux machine, without Docker.

Each :class:`Host` is a network namespace with its own address on a private 10.x subnet that
this module makes (veth pairs into a bridge that lives in a namespace of its own, so the
machine's own network is never touched), plus its own mount and PID namespaces: its ``/tmp/ray``
is a folder of its own (no host can reach another's Ray sockets) and it sees only its own
processes (so ``ray stop`` inside a host stops that host only, and Ray's search for local
raylets finds only its own). Host names map through ``/etc/netns/<ns>/hosts``, which
``ip netns exec`` mounts over ``/etc/hosts``. Needs root; :func:`skip_reason` says why not.

Traffic stays on the subnet made here: no namespace has a route anywhere else.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "acnn"
MADE_MOUNT_POINTS: set[str] = set()


def skip_reason() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "needs iproute2's ip, util-linux's unshare and nsenter"
    name = f"{PREFIX}-probe-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace ({made.stderr.strip()[:120]})"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")


@dataclass
class Host:
    """One simulated machine: ``run``/``popen`` execute commands inside it."""

    name: str
    ns: str
    ip: str
    root: Path
    anchor: subprocess.Popen | None = None  # type: ignore[type-arg]
    init_pid: int = 0
    procs: list[subprocess.Popen] = field(default_factory=list)  # type: ignore[type-arg]
    binds: dict[str, Path] = field(default_factory=dict)  # path in the host -> folder of the test
    workdir: str = "/"  # where its commands start
    own_pids: bool = True  # False: it shares the machine's process table (like docker --pid=host)

    def _enter(self, argv: Sequence[str], env: dict[str, str] | None) -> list[str]:
        envs = [f"{k}={v}" for k, v in (env or {}).items()]
        return [
            "nsenter", "-t", str(self.init_pid), "-n", "-m", "-p", "-u", f"--wd={self.workdir}",
            "env", "-i", *envs, *argv,
        ]  # fmt: skip

    def popen(self, argv: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen:  # type: ignore[type-arg]
        """Start ``argv`` in this host with exactly ``env``; output to ``log``."""
        out = open(log, "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(self._enter(argv, env), stdout=out, stderr=subprocess.STDOUT, cwd=str(self.root))
        out.close()
        self.procs.append(proc)
        return proc

    def run(self, argv: Sequence[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
        return subprocess.run(self._enter(argv, env), capture_output=True, text=True, timeout=timeout)

    def power_off(self) -> None:
        """Every process of this host dies at once (SIGKILL to its PID namespace's init, or to
        every process in its network namespace where it has no PID namespace of its own)."""
        if not self.own_pids:
            listed = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True)
            for pid_text in listed.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_text), signal.SIGKILL)
        if self.init_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init_pid, signal.SIGKILL)
        if self.anchor is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.anchor.wait(timeout=10)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.init_pid = 0

    def power_on(self) -> None:
        """A fresh boot: new mount and PID namespaces in the same network namespace, an empty
        ``/tmp/ray``."""
        ray_dir = self.root / "ray"
        shutil.rmtree(ray_dir, ignore_errors=True)
        ray_dir.mkdir(parents=True)
        Path("/tmp/ray").mkdir(exist_ok=True)  # the mount point (each host binds its own over it)
        for dst, src in self.binds.items():
            src.mkdir(parents=True, exist_ok=True)
            if not Path(dst).exists():  # an empty mount point, removed again by network()
                Path(dst).mkdir(parents=True)
                MADE_MOUNT_POINTS.add(dst)
        # like a container: its own host name, resolving (through /etc/hosts) to its own address,
        # which is how Ray finds a node's IP when nothing routes to the internet
        mounts = "".join(f" && mount --bind {src} {dst}" for dst, src in self.binds.items())
        script = f"hostname {self.name} && mount --bind {ray_dir} /tmp/ray{mounts} && exec sleep infinity"
        pids = ["--pid", "--fork", "--mount-proc"] if self.own_pids else ["--fork"]
        self.anchor = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "unshare", "--uts", "--mount", "--propagation", "private",
             *pids, "sh", "-c", script],
        )  # fmt: skip
        self.procs = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            kids = Path(f"/proc/{self.anchor.pid}/task/{self.anchor.pid}/children")
            with contextlib.suppress(OSError):
                pids = kids.read_text().split()
                if pids and Path(f"/proc/{pids[0]}/comm").read_text().strip() == "sleep":
                    self.init_pid = int(pids[0])
                    return
            time.sleep(0.05)
        raise RuntimeError(f"host {self.name} did not boot")


def sweep_leftovers() -> None:
    """Remove the namespaces of earlier runs whose test process is gone (killed before its
    clean-up could run), and every process still inside them."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    for ns in (n for n in listed if n.startswith(f"{PREFIX}-") and n.endswith("-sw")):
        owner = Path("/etc/netns") / ns / "owner"
        with contextlib.suppress(OSError, ValueError):
            pid = int(owner.read_text())
            if Path(f"/proc/{pid}").exists():
                continue  # a live test's
        tag = ns[: -len("-sw")]
        for other in (n for n in listed if n.startswith(f"{tag}-")):
            pids = subprocess.run(["ip", "netns", "pids", other], capture_output=True, text=True).stdout.split()
            for pid_text in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_text), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", other], capture_output=True)
            shutil.rmtree(Path("/etc/netns") / other, ignore_errors=True)


def _raise_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # so that the clean-up below runs


@contextlib.contextmanager
def network(
    names: Sequence[str],
    workdir: Path,
    binds: dict[str, dict[str, Path]] | None = None,
    cwd: str = "/",
    shared_pids: Sequence[str] = (),
) -> Iterator[dict[str, Host]]:
    """Hosts ``names`` on a private /24 of their own, each resolving the others by name, with
    ``binds[name]`` mounted in it and commands started in ``cwd``; the hosts in ``shared_pids``
    see the machine's whole process table (every other host's processes too) but keep their own
    ``/tmp/ray``; everything is torn down on exit, even on failure."""
    tag = secrets.token_hex(2)
    subnet = f"10.{200 + int(tag[:2], 16) % 50}.{int(tag[2:], 16)}"
    switch = f"{PREFIX}-{tag}-sw"
    hosts = {
        name: Host(
            name,
            f"{PREFIX}-{tag}-{i}",
            f"{subnet}.{i + 1}",
            workdir / name,
            binds=(binds or {}).get(name, {}),
            workdir=cwd,
            own_pids=name not in shared_pids,
        )
        for i, name in enumerate(names)
    }
    made: list[str] = []
    sweep_leftovers()
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        _ip("netns", "add", switch)
        made.append(switch)
        (Path("/etc/netns") / switch).mkdir(parents=True, exist_ok=True)
        (Path("/etc/netns") / switch / "owner").write_text(str(os.getpid()))
        _ip("link", "add", "br0", "type", "bridge", ns=switch)
        _ip("link", "set", "br0", "up", ns=switch)
        for i, host in enumerate(hosts.values()):
            _ip("netns", "add", host.ns)
            made.append(host.ns)
            _ip("link", "add", f"v{i}", "netns", switch, "type", "veth", "peer", "name", "eth0", "netns", host.ns)
            _ip("link", "set", f"v{i}", "master", "br0", "up", ns=switch)
            _ip("addr", "add", f"{host.ip}/24", "dev", "eth0", ns=host.ns)
            _ip("link", "set", "eth0", "up", ns=host.ns)
            _ip("link", "set", "lo", "up", ns=host.ns)
            etc = Path("/etc/netns") / host.ns
            etc.mkdir(parents=True, exist_ok=True)
            lines = ["127.0.0.1 localhost"] + [f"{h.ip} {h.name}" for h in hosts.values()]
            (etc / "hosts").write_text("\n".join(lines) + "\n")
            host.root.mkdir(parents=True, exist_ok=True)
            host.power_on()
        yield hosts
    finally:
        for host in hosts.values():
            host.power_off()
            shutil.rmtree(Path("/etc/netns") / host.ns, ignore_errors=True)
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(Path("/etc/netns") / switch, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)
        for point in list(MADE_MOUNT_POINTS):
            with contextlib.suppress(OSError):
                Path(point).rmdir()
            MADE_MOUNT_POINTS.discard(point)
