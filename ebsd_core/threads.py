"""As many PyTorch (and image-decoding) threads as the CPU time this process may use, where a container or batch
system caps it.

PyTorch starts one thread per core it can run on. A container limited to a share of the machine's CPU time
(``docker run --cpus 4``, a Kubernetes CPU limit, a systemd ``CPUQuota=``) can still run on every core, so on a
64-core server it would start 64 threads and have them throttled in turn. Measured on the 2-core VM in a cgroup of
one CPU's time: a small training took 31.5-35.6 s with 2 threads and 26.3-29.3 s with 1 (bench/RESULTS.md). The cap
is read from the process's cgroup (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), the tightest along its path;
``OMP_NUM_THREADS``, where set, is left to decide.
"""

from __future__ import annotations

import math
import os
from pathlib import Path, PurePosixPath


def _cgroup_mounts(mountinfo: str) -> list[tuple[PurePosixPath, Path, bool]]:
    """(the cgroup a mount shows, where it is mounted, whether it is cgroup v2) of each mount of a CPU controller."""
    mounts = []
    for line in mountinfo.splitlines():
        mount, _, filesystem = line.partition(" - ")
        fields, details = mount.split(), filesystem.split()
        if len(fields) < 5 or len(details) < 3:
            continue
        if details[0] == "cgroup2" or (details[0] == "cgroup" and "cpu" in details[2].split(",")):
            mounts.append((PurePosixPath(fields[3]), Path(fields[4]), details[0] == "cgroup2"))
    return mounts


def _read_quota(folder: Path, v2: bool) -> float | None:
    """CPUs' worth of time that the cgroup at ``folder`` allows, or None where it sets no limit."""
    try:
        if v2:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        return None if quota <= 0 else quota / int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError, ZeroDivisionError):
        return None


def cpu_quota(proc: Path = Path("/proc/self")) -> float | None:
    """The CPUs' worth of time this process may use under its cgroups' limits (1.5: one and a half), the tightest
    of its cgroup and those above it; None where none is set or the system does not say (not Linux)."""
    try:
        cgroups = (proc / "cgroup").read_text(encoding="utf-8", errors="replace")
        # a mount point of other letters (a USB drive's "Données") must not stop a command in an ASCII locale
        mounts = _cgroup_mounts((proc / "mountinfo").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
    quotas = []
    for line in cgroups.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        v2 = hierarchy == "0" and not controllers
        if not v2 and "cpu" not in controllers.split(","):
            continue
        for shown, mounted_at, is_v2 in mounts:
            if is_v2 != v2 or not PurePosixPath(path).is_relative_to(shown):
                continue
            folder = mounted_at / PurePosixPath(path).relative_to(shown)
            for level in [folder, *folder.parents]:
                if (quota := _read_quota(level, v2)) is not None:
                    quotas.append(quota)
                if level == mounted_at:
                    break
    return min(quotas, default=None)


def usable_cpus() -> int:
    """The CPUs this process can keep busy: those it may run on (``taskset``, a batch job's cpuset), no more than its
    cgroup's CPU time allows (rounded up); PyTorch counts the first alone."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = cpu_quota()
    return max(1, cpus if quota is None else min(cpus, math.ceil(quota)))


def fit_torch_threads() -> int:
    """Start no more PyTorch threads than :func:`usable_cpus` (the cgroup's CPU time rounded up, as dask counts);
    returns the number of threads PyTorch now uses."""
    import torch

    if "OMP_NUM_THREADS" not in os.environ and (cpus := usable_cpus()) < torch.get_num_threads():
        torch.set_num_threads(cpus)
    return torch.get_num_threads()
