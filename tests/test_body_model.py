"""Body-model loading, and our SMPL forward pass (mesh, joints, landmarks) against smplx itself."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import FIXTURES, ROOT, random_pose
from smplx_reference import smplx, smplx_layer

from lsmplify_blender.core.body_model import (
    OPEN_MODEL_PATH,
    SMPL_JOINT_NAMES,
    BodyModel,
    load_model_data,
    rotmats_from_axis_angle,
)
from lsmplify_blender.core.errors import ModelFileError


def test_open_model_is_a_sane_human(model_data):
    v = model_data.v_template
    j = model_data.J_regressor @ v
    height = v[:, 1].max() - v[:, 1].min()
    assert 1.5 < height < 1.9
    idx = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
    assert j[idx["left_hip"], 0] > 0 > j[idx["right_hip"], 0]  # subject's left is +X
    assert j[idx["left_shoulder"], 0] > 0
    assert (
        j[idx["head"], 1]
        > j[idx["neck"], 1]
        > j[idx["pelvis"], 1]
        > j[idx["left_knee"], 1]
        > j[idx["left_ankle"], 1]
    )
    assert v[:, 1].min() < j[idx["left_ankle"], 1]  # feet at the bottom
    assert v[model_data.landmarks["nose"], 2] > j[idx["head"], 2]  # faces +Z
    # T-pose: shoulder-to-wrist runs along X
    arm = j[idx["left_wrist"]] - j[idx["left_shoulder"]]
    assert abs(arm[0]) / np.linalg.norm(arm) > 0.97
    np.testing.assert_allclose(model_data.weights.sum(1), 1, atol=1e-4)
    np.testing.assert_allclose(model_data.J_regressor.sum(1), 1, atol=1e-4)
    assert OPEN_MODEL_PATH.stat().st_size < 20 * 2**20


def test_open_model_loads_in_smplx_and_fast_path_matches(model):
    rot = random_pose(6, seed=1)
    betas = torch.randn(6, 10, generator=torch.Generator().manual_seed(2))
    trans = torch.randn(6, 3, generator=torch.Generator().manual_seed(3))
    layer = smplx_layer(model.data, 6, dtype=torch.float32)
    out = layer(betas=betas, global_orient=rot[:, :1], body_pose=rot[:, 1:], transl=trans)
    fast = model.joints(rot, betas, trans)
    assert torch.allclose(out.joints[:, :24], fast, atol=1e-5)
    # skinning a few vertices alone equals the full smplx mesh at those vertices
    ids = list(model.data.landmarks.values())
    few = model.skin_points(rot, betas, trans, ids)
    assert torch.allclose(out.vertices[:, ids], few, atol=1e-5)


def _with_random_posedirs(model_data, seed=0, scale=2e-3):
    """The open model with random pose correctives (its own are zero): exercises that term."""
    import dataclasses

    rng = np.random.default_rng(seed)
    pd = rng.normal(0, scale, (model_data.num_vertices, 3, 207)).astype(np.float32)
    return dataclasses.replace(model_data, posedirs=pd)


@pytest.mark.parametrize("correctives", [False, True], ids=["open_model", "random_posedirs"])
def test_our_mesh_equals_smplx_for_random_poses_and_shapes(model_data, correctives):
    data = _with_random_posedirs(model_data) if correctives else model_data
    ours = BodyModel(data, dtype=torch.float64)
    n = 16
    rot = random_pose(n, seed=11, scale=1.3).double()
    betas = (
        torch.randn(n, 10, generator=torch.Generator().manual_seed(12), dtype=torch.float64) * 1.5
    )
    trans = torch.randn(n, 3, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
    ref = smplx_layer(data, n)(
        betas=betas, global_orient=rot[:, :1], body_pose=rot[:, 1:], transl=trans
    )
    verts = ours.vertices(rot, betas, trans, chunk=5)  # chunks smaller than the batch
    err = float((verts - ref.vertices).abs().max())
    assert err < 1e-6, err
    assert float((ours.joints(rot, betas, trans) - ref.joints[:, :24]).abs().max()) < 1e-6
    if correctives:  # the correctives really move the mesh, by millimetres
        plain = BodyModel(model_data, dtype=torch.float64).vertices(rot, betas, trans)
        assert float((plain - verts).norm(dim=-1).max()) > 1e-3
    # float32, the solvers' precision: still far below a visible difference
    f32 = BodyModel(data).vertices(rot.float(), betas.float(), trans.float())
    assert float((f32.double() - ref.vertices).abs().max()) < 1e-5


def test_convert_output_is_reproduced_by_smplx_smpl_class(tmp_path, model_data):
    """An output .npz of ``python -m lsmplify_blender convert`` read by plain smplx.SMPL gives
    the mesh the core means: poses (axis-angle), betas, trans as AMASS files carry them."""
    out = tmp_path / "walk.npz"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lsmplify_blender",
            "convert",
            str(FIXTURES / "01_01_short.bvh"),
            "--out",
            str(out),
            "--solver",
            "analytic",
            "--quiet",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["frames"] >= 199
    z = np.load(out)
    poses, betas, trans = (
        torch.as_tensor(z[k], dtype=torch.float64) for k in ("poses", "betas", "trans")
    )
    n = poses.shape[0]
    layer = smplx_layer(model_data, n, cls=smplx.SMPL)
    ref = layer(
        betas=betas[None].expand(n, -1),
        global_orient=poses[:, :3],
        body_pose=poses[:, 3:72],
        transl=trans,
    )
    ours = BodyModel(model_data, dtype=torch.float64).vertices(
        rotmats_from_axis_angle(poses), betas, trans
    )
    err = float((ours - ref.vertices).abs().max())
    assert err < 1e-5, err


def test_core_runs_with_smplx_blocked():
    """The core never imports smplx: a solve and a mesh with ``import smplx`` made to fail."""
    code = (
        "import sys; sys.modules['smplx'] = None\n"
        "import torch\n"
        "from lsmplify_blender.core import body_model, cli, solver, optimize, analytic_ik, prepare\n"
        "from lsmplify_blender.core.formats import read_keypoints\n"
        f"seq = read_keypoints({str(FIXTURES / '01_01_short.bvh')!r})\n"
        "m = body_model.BodyModel(body_model.load_model_data())\n"
        "p = prepare.prepare(seq, m)\n"
        "sol = solver.solve(p, m, solver='analytic')\n"
        "v = m.vertices(sol.rotmats[:20], sol.betas, sol.trans[:20])\n"
        "assert v.shape == (20, m.data.num_vertices, 3) and torch.isfinite(v).all()\n"
        "assert 'smplx' not in {k.split('.')[0] for k, mod in sys.modules.items() if mod is not None}\n"
        "print('ok', v.shape[0])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok 20", (
        proc.stdout + proc.stderr[-3000:]
    )


def test_core_sources_never_import_smplx():
    core = ROOT / "lsmplify_blender"
    offenders = [
        str(p.relative_to(ROOT))
        for p in core.rglob("*.py")
        if any(
            line.split("#")[0].strip().startswith(("import smplx", "from smplx"))
            for line in p.read_text(encoding="utf-8").splitlines()
        )
    ]
    assert offenders == []


def test_zero_pose_returns_the_rest_mesh(model):
    rot = torch.eye(3).expand(1, 24, 3, 3)
    verts = model.vertices(rot, torch.zeros(10))
    assert torch.allclose(verts[0], model.v_template, atol=1e-6)


def test_skinning_round_trip_pose_then_unpose(model):
    """Posing then applying each vertex's inverse blended transform gives the rest mesh back."""
    rot = random_pose(2, seed=5)
    betas = torch.zeros(2, 10)
    verts = model.vertices(rot, betas)
    rest_j = model.rest_joints(betas)
    g_rot, g_pos = model.global_transforms(rot, rest_j)
    # blended affine transform per vertex: A = sum w G_rot, b = sum w (g_pos - G_rot rest_j)
    w = model.weights
    a = torch.einsum("vj,njab->nvab", w, g_rot)
    b = torch.einsum("vj,nja->nva", w, g_pos - (g_rot @ rest_j[..., None])[..., 0])
    back = torch.linalg.solve(a, (verts - b)[..., None])[..., 0]
    assert (back - model.v_template).norm(dim=-1).max() < 1e-4


def test_npz_round_trip(tmp_path, model_data):
    p = tmp_path / "model.npz"
    np.savez(
        p,
        v_template=model_data.v_template,
        shapedirs=model_data.shapedirs,
        J_regressor=model_data.J_regressor,
        weights=model_data.weights,
        kintree_table=np.stack([model_data.parents, np.arange(24)]),
        f=model_data.faces,
    )
    again = load_model_data(p)
    np.testing.assert_array_equal(again.v_template, model_data.v_template)
    assert again.landmarks == ({} if model_data.num_vertices != 6890 else again.landmarks)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.pop("J_regressor"), "missing J_regressor"),
        (lambda d: d.update(weights=d["weights"][:, :22]), "weights"),
        (
            lambda d: d.update(
                kintree_table=np.stack([np.r_[-1, np.zeros(23, int)], np.arange(24)])
            ),
            "tree",
        ),
        (lambda d: d.update(shapedirs=d["shapedirs"] * np.nan), "NaN"),
    ],
)
def test_malformed_npz_models_are_refused(tmp_path, model_data, mutate, match):
    d = dict(
        v_template=model_data.v_template,
        shapedirs=model_data.shapedirs,
        J_regressor=model_data.J_regressor,
        weights=model_data.weights,
        kintree_table=np.stack([model_data.parents, np.arange(24)]),
        f=model_data.faces,
    )
    mutate(d)
    p = tmp_path / "bad.npz"
    np.savez(p, **d)
    with pytest.raises(ModelFileError, match=match):
        load_model_data(p)


def test_missing_and_truncated_model_files(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model_data(tmp_path / "nope.pkl")
    p = tmp_path / "cut.npz"
    p.write_bytes(OPEN_MODEL_PATH.read_bytes()[:1000])
    with pytest.raises(ModelFileError):
        load_model_data(p)
    q = tmp_path / "model.obj"
    q.write_text("v 0 0 0")
    with pytest.raises(ModelFileError, match=r"\.pkl or \.npz"):
        load_model_data(q)
