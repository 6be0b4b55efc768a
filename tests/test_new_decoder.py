"""A decoder added as one class and one yaml (PLS: hyperexp/decode/closed_form.py, conf/decoder/pls.yaml)
is a sweep value and a report group with no other edit."""

from tests.conftest import TINY, run_cli, runs_of, store


def test_a_new_decoder_appears_in_a_sweep_and_its_report(tmp_path):
    tiny = [a for a in TINY if not a.startswith("decoder.")]
    result = run_cli("-m", *tiny, "decoder=ridge,pls", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    children = [r for r in runs_of(store(tmp_path)) if r.data.tags.get("sweep_role") != "parent"]
    assert sorted(r.data.tags["group"] for r in children) == ["decoder=pls", "decoder=ridge"]
    assert all(r.info.status == "FINISHED" for r in children)
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "decoder=pls" in report and "decoder=ridge" in report
