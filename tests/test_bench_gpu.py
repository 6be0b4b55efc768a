"""The GPU check script runs its every step at toy sizes on the CPU (the dry run)."""

from tests.conftest import REPO, run_cli


def test_gpu_script_dry_run_on_cpu(tmp_path):
    result = run_cli(str(REPO / "bench" / "gpu.py"), "--device", "cpu", "--dry-run", cwd=tmp_path, module=None)
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout
    assert "dry run" in table and "FAILED" not in table
    for step in ("recipe on device = CPU", "hyperalignment on device = CPU", "PGGAN 1024^2 float32", "feature loss"):
        assert step in table, step
