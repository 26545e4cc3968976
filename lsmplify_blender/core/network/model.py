"""The residual IK network (Learnable SMPLify style), its input normalisation and checkpoint I/O.

Inputs, all in the human-centric frame F of the INIT frame (origin = mid-hip of the init
keypoints; y = unit(left hip - right hip); z = torso direction (neck - mid-hip) with its y
component removed; x = y x z, so F is a proper rotation):
  init keypoints, target keypoints (24 x 3 each, zeroed where missing), the init pose's own
  joints (root-relative), target-minus-init-pose joints (root-relative), both visibility
  masks, the init pose as 6D (root orientation expressed in F), betas and the rest skeleton
  (root-relative rest joints). Output: a residual 6D rotation per joint; R = R_init @ dR.
The last layer starts at zero, so an untrained network returns the init pose exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..rotations import matrix_to_rotation_6d, normalize, rotation_6d_to_matrix

ID6 = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
NECK = 12
CHECKPOINT_PATH = Path(__file__).resolve().parents[1] / "data" / "network.pt"
NUM_BETAS = 10
IN_DIM = 24 * 3 * 4 + 24 * 6 + 48 + NUM_BETAS + 24 * 3


def human_frame(
    kp: torch.Tensor, fallback: torch.Tensor | None = None, mask: torch.Tensor | None = None
):
    """Origin (B, 3) and proper rotation F (B, 3, 3) (columns x, y, z) from keypoints (B, 24, 3).

    Where ``mask`` marks hips/neck missing, ``fallback`` joints (same frame) stand in.
    """
    if mask is not None and fallback is not None:
        kp = torch.where(mask[..., None] > 0, kp, fallback)
    lhip, rhip, neck = kp[:, 1], kp[:, 2], kp[:, NECK]
    origin = 0.5 * (lhip + rhip)
    y = normalize(lhip - rhip)
    torso = neck - origin
    z = normalize(torso - (torso * y).sum(-1, keepdim=True) * y)
    x = torch.cross(y, z, dim=-1)
    return origin, torch.stack([x, y, z], -1)


def to_frame(p: torch.Tensor, origin: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    """Points (B, N, 3) into the frame: F^T (p - o)."""
    return (p - origin[:, None]) @ frame


def build_features(kp_init, kp_tgt, mask_init, mask_tgt, rot_init, fk_init, betas, rest):
    """Network input (B, IN_DIM).

    kp_* (B, 24, 3) world keypoints; mask_* (B, 24) 0/1; rot_init (B, 24, 3, 3) local rotations;
    fk_init (B, 24, 3) the init pose's joints (any translation); betas (B, 10); rest (B, 24, 3).
    """
    fk_rel = fk_init - fk_init[:, :1]
    origin, frame = human_frame(kp_init, fk_rel + kp_init[:, :1], mask_init)
    a = to_frame(kp_init, origin, frame) * mask_init[..., None]
    b = to_frame(kp_tgt, origin, frame) * mask_tgt[..., None]
    c = fk_rel @ frame
    tgt_rel = to_frame(kp_tgt, kp_tgt[:, 0], frame)
    d = (tgt_rel - c) * mask_tgt[..., None] * mask_tgt[:, :1, None]
    r = rot_init.clone()
    r[:, 0] = frame.transpose(-1, -2) @ rot_init[:, 0]
    six = matrix_to_rotation_6d(r)
    rest_rel = rest - rest[:, :1]
    n = kp_init.shape[0]
    return torch.cat(
        [
            a.reshape(n, -1),
            b.reshape(n, -1),
            c.reshape(n, -1),
            4.0 * d.reshape(n, -1),
            six.reshape(n, -1),
            mask_init,
            mask_tgt,
            0.3 * betas[:, :NUM_BETAS],
            rest_rel.reshape(n, -1),
        ],
        -1,
    )


class _Block(nn.Module):
    def __init__(self, h: int):
        super().__init__()
        self.norm = nn.LayerNorm(h)
        self.fc1 = nn.Linear(h, h)
        self.fc2 = nn.Linear(h, h)

    def forward(self, x):
        return x + self.fc2(nn.functional.gelu(self.fc1(self.norm(x))))


class ResidualIKNet(nn.Module):
    """MLP over the flattened joint features -> residual 6D rotation for each of the 24 joints."""

    def __init__(self, hidden: int = 768, blocks: int = 2, in_dim: int = IN_DIM):
        super().__init__()
        self.config = dict(hidden=hidden, blocks=blocks, in_dim=in_dim)
        self.inp = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList([_Block(hidden) for _ in range(blocks)])
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, 24 * 6)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.register_buffer("id6", torch.tensor(ID6).repeat(24))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, IN_DIM) -> residual rotations dR (B, 24, 3, 3)."""
        x = nn.functional.gelu(self.inp(feats))
        for blk in self.blocks:
            x = blk(x)
        d6 = self.out(self.norm(x)) + self.id6
        return rotation_6d_to_matrix(d6.reshape(-1, 24, 6))


def compose(rot_init: torch.Tensor, d_rot: torch.Tensor) -> torch.Tensor:
    """R = R_init @ dR (right-multiplied, root included)."""
    return rot_init @ d_rot


def save_network(net: ResidualIKNet, path, meta: dict | None = None, half: bool = True) -> None:
    state = {
        k: (v.half() if half and v.is_floating_point() else v) for k, v in net.state_dict().items()
    }
    torch.save({"config": net.config, "state_dict": state, "meta": meta or {}}, path)


def load_network(path=None, device="cpu") -> ResidualIKNet:
    """Load the checkpoint (weights only) onto ``device`` (CPU works; map_location is 'cpu').

    Weights-only loading never runs code from the file. A file that is missing, damaged, or
    made for another architecture raises ``ModelFileError`` saying so.
    """
    from ..errors import ModelFileError

    p = Path(path) if path else CHECKPOINT_PATH
    if not p.is_file():
        raise ModelFileError(
            f"Network checkpoint not found: {p}. Leave the checkpoint unset to use the shipped one."
        )
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (any failure of a hostile file is one clear error)
        raise ModelFileError(
            f"{p.name}: not a readable LSMPLify network checkpoint ({type(exc).__name__}); "
            "it is damaged or not a torch weights file."
        ) from None
    if not isinstance(ck, dict) or "config" not in ck or "state_dict" not in ck:
        raise ModelFileError(
            f"{p.name}: not an LSMPLify network checkpoint (expected 'config' and 'state_dict'); "
            "train one with tools/train_network.py or use the shipped one."
        )
    try:
        net = ResidualIKNet(**ck["config"])
        net.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in ck["state_dict"].items()}
        )
    except (TypeError, RuntimeError, KeyError) as exc:
        raise ModelFileError(
            f"{p.name}: this checkpoint is for another network architecture "
            f"({str(exc).splitlines()[0][:160]}). Use a checkpoint made by this version."
        ) from None
    net.meta = ck.get("meta", {})
    return net.to(device).eval()
