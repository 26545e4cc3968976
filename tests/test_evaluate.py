"""The `eval` command on two short CMU test clips: report, plot, JSON line and sanity of the figures."""

import json

import pytest
from conftest import SHARED_MOCAP

from lsmplify_blender.core.cli import main
from lsmplify_blender.research.evaluate import M_NET, M_NET_SEQ, METRICS, REAL_METRICS, method_names

DATA = SHARED_MOCAP / "cmu_subset" / "test"


@pytest.mark.skipif(not DATA.is_dir(), reason="cmu_subset test clips not available")
def test_eval_short_clips(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "report.md"
    code = main(
        [
            "eval",
            "--data",
            str(DATA),
            "--clips",
            "2",
            "--max-frames",
            "30",
            "--optimize-frames",
            "5",
            "--frames",
            "12",
            "--sources",
            "cmu_bvh,deepmimic",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    stdout, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])

    # files: the markdown table and a real PNG next to it
    text = out.read_text()
    png = tmp_path / "report.png"
    assert summary["report"] == str(out) and summary["plot"] == str(png)
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| method |" in text and "Real skeleton" in text and "report.png" in text
    assert "## Real captures" in text and "report_real_segments.png" in text

    # every method, every metric, in the JSON line and in the table
    res = summary["results"]
    assert set(res) == set(method_names())
    for name, row in res.items():
        assert name in text
        for m in METRICS:
            assert m in row, (name, m)
        assert row["frames"] > 0 and row["fps"] > 0
    assert res["optimize (baseline)"]["frames"] == 2 * 5
    assert summary["clips"] == 2 and summary["frames"] == 2 * 30
    assert summary["input_jitter"] > 0
    real = summary["real_skeleton"]
    assert {"bone_std_mm", "jitter", "frames"} <= set(real["input"])
    for name in (
        "analytic (swing only)",
        "analytic",
        "optimize (baseline)",
        M_NET,
        M_NET_SEQ,
        "network + refine 5",
    ):
        for m in REAL_METRICS:
            assert m in real["results"][name], (name, m)
        assert real["results"][name]["fit"] < 100  # a real skeleton is not the model's, but close

    # the real-capture section: its JSON line, one row per solver and source
    rc = summary["real_captures"]
    from lsmplify_blender.research.real_eval import default_solvers

    assert set(rc["results"]) == set(default_solvers()) >= {"analytic", "network", "optimize"}
    assert set(rc["results"]["network"]) == {"cmu_bvh", "deepmimic"}
    assert rc["takes"] == [
        "cmu_bvh/131_03",
        "deepmimic/deepmimic_walk",
        "deepmimic/deepmimic_punch",
    ]

    # sanity: IK is exact on clean model joints; the network recovers twist the swing-only IK cannot
    assert res["analytic"]["mpjpe"] < 1.0 and res["analytic (swing only)"]["mpjpe"] < 1.0
    assert (
        res[M_NET]["mpve"] < res["analytic"]["mpve"]
        and res[M_NET_SEQ]["mpve"] < res["analytic"]["mpve"]
    )
    assert res["network pairwise s=1 (GT init)"]["mpve"] < res["analytic"]["mpve"]
