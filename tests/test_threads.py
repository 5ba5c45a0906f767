import torch

from ebsd_core import threads
from ebsd_core.threads import cpu_quota, fit_torch_threads


def _system(tmp_path, cgroup: str, mounts: list[str], files: dict[str, str]):
    """A fake /proc/self (its cgroup and mountinfo files) and cgroup tree under ``tmp_path``."""
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text(cgroup)
    (proc / "mountinfo").write_text("\n".join(line.format(root=tmp_path) for line in mounts) + "\n")
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return proc


V1_CPU = "36 35 0:30 {mount_root} {root}/cpu rw,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct"
V2 = "30 25 0:26 {mount_root} {root}/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate"


def test_the_tightest_cgroup_v1_quota_along_the_path(tmp_path):
    """A job's cgroup inside a slice: the slice's 1.5 CPUs bind, the job's own 4 do not."""
    proc = _system(
        tmp_path,
        "4:memory:/slice/job\n3:cpu,cpuacct:/slice/job\n0::/\n",
        [V1_CPU.replace("{mount_root}", "/")],
        {
            "cpu/slice/job/cpu.cfs_quota_us": "400000\n",
            "cpu/slice/job/cpu.cfs_period_us": "100000\n",
            "cpu/slice/cpu.cfs_quota_us": "150000\n",
            "cpu/slice/cpu.cfs_period_us": "100000\n",
            "cpu/cpu.cfs_quota_us": "-1\n",
            "cpu/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cpu_quota(proc) == 1.5


def test_a_container_sees_its_own_cgroup_at_the_mount_root(tmp_path):
    """Docker without a cgroup namespace: the path names the container's cgroup, which is what is mounted."""
    proc = _system(
        tmp_path,
        "0::/docker/abc\n",
        [V2.replace("{mount_root}", "/docker/abc")],
        {"unified/cpu.max": "400000 100000\n"},
    )
    assert cpu_quota(proc) == 4.0


def test_no_limit_and_no_cgroups_mean_no_quota(tmp_path):
    proc = _system(tmp_path, "0::/user.slice\n", [V2.replace("{mount_root}", "/")], {"unified/cpu.max": "max 100000"})
    assert cpu_quota(proc) is None
    assert cpu_quota(tmp_path / "not-linux") is None


def test_threads_fit_the_quota_unless_omp_num_threads_decides(monkeypatch):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(threads, "cpu_quota", lambda: 0.5)
        assert fit_torch_threads() == 1
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert fit_torch_threads() == 2
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr(threads, "cpu_quota", lambda: 1.2)  # rounded up, as dask counts
        assert fit_torch_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_mount_point_of_other_letters_is_passed_over(tmp_path):
    """/proc/self/mountinfo shows mount points as their bytes: a drive named in Latin-1 is not UTF-8, and reading it
    must not stop every command that runs a network."""
    proc = _system(tmp_path, "0::/\n", [V2.replace("{mount_root}", "/")], {"unified/cpu.max": "200000 100000\n"})
    with open(proc / "mountinfo", "ab") as mountinfo:
        mountinfo.write(b"40 25 8:17 / /media/Donn\xe9es rw,nosuid - vfat /dev/sdb1 rw\n")
    assert cpu_quota(proc) == 2.0


def test_usable_cpus_are_those_it_may_run_on_within_its_quota(monkeypatch):
    """A batch job's cpuset (or ``taskset``) and a container's quota both bound the image decoders' threads."""
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(threads, "cpu_quota", lambda: None)
    assert threads.usable_cpus() == 4
    monkeypatch.setattr(threads, "cpu_quota", lambda: 1.5)
    assert threads.usable_cpus() == 2
    monkeypatch.setattr(threads, "cpu_quota", lambda: 0.2)
    assert threads.usable_cpus() == 1
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {3})
    monkeypatch.setattr(threads, "cpu_quota", lambda: 8.0)
    assert threads.usable_cpus() == 1
