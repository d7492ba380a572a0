"""The same SiT train step in PyTorch, timed beside jaxrep's on the same machine (issue: performance).

    python -m benchmarks.torch_sit                      # the `cpu` preset shape, batch 32
    python -m benchmarks.torch_sit --preset S/2 --batch 32 --steps 5

The PyTorch model is written here from REPA's `models/sit.py` architecture (adaLN-Zero DiT, fused qkv,
GELU-tanh MLP, zero-initialised final layer; `F.scaled_dot_product_attention`), trained with the same
objective (linear path, velocity MSE, 10 % label drop) and optimizer (AdamW, clip 1.0). The official module
needs timm and its repository, which are not installable here. Requires the `ref` extra (torch).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np


def torch_sit(torch, nn, *, input_size, patch_size, in_channels, hidden_size, depth, num_heads, num_classes):
    F = torch.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
            self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
            self.proj = nn.Linear(hidden_size, hidden_size)
            self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
            self.fc1 = nn.Linear(hidden_size, 4 * hidden_size)
            self.fc2 = nn.Linear(4 * hidden_size, hidden_size)
            self.ada = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

        def forward(self, x, c):
            shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).unsqueeze(1).chunk(6, dim=-1)
            b, n, d = x.shape
            h = self.norm1(x) * (1 + scale1) + shift1
            q, k, v = self.qkv(h).reshape(b, n, 3, num_heads, d // num_heads).permute(2, 0, 3, 1, 4)
            attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
            x = x + gate1 * self.proj(attn)
            h = self.norm2(x) * (1 + scale2) + shift2
            return x + gate2 * self.fc2(F.gelu(self.fc1(h), approximate="tanh"))

    class SiT(nn.Module):
        def __init__(self):
            super().__init__()
            self.x_embedder = nn.Conv2d(in_channels, hidden_size, patch_size, patch_size)
            grid = input_size // patch_size
            from jaxrep.nn.sit import sincos_2d

            self.register_buffer("pos", torch.tensor(sincos_2d(hidden_size, grid, grid), dtype=torch.float32)[None])
            self.t_mlp = nn.Sequential(nn.Linear(256, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))
            self.y_embedder = nn.Embedding(num_classes + 1, hidden_size)
            self.blocks = nn.ModuleList([Block() for _ in range(depth)])
            self.final_norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
            self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
            self.final = nn.Linear(hidden_size, patch_size * patch_size * in_channels)

        def forward(self, x, t, y, hidden_at=None):
            b, c, h, w = x.shape
            tokens = self.x_embedder(x).flatten(2).transpose(1, 2) + self.pos
            freqs = torch.exp(-math.log(10000.0) * torch.arange(128, dtype=torch.float32) / 128)
            args = t[:, None] * freqs[None]
            cond = self.t_mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1)) + self.y_embedder(y)
            hidden = None
            for index, block in enumerate(self.blocks):
                tokens = block(tokens, cond)
                hidden = tokens if index + 1 == hidden_at else hidden
            shift, scale = self.final_ada(cond).unsqueeze(1).chunk(2, dim=-1)
            out = self.final(self.final_norm(tokens) * (1 + scale) + shift)
            p, g = patch_size, h // patch_size
            out = out.reshape(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)
            return out if hidden_at is None else (out, hidden)

    return SiT()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu", help="'cpu' (the cpu preset's shape) or a SiT preset like S/2")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    import torch
    from torch import nn

    from jaxrep.nn.sit import PRESETS

    torch.manual_seed(0)
    if args.preset == "cpu":
        shape = dict(input_size=32, patch_size=4, in_channels=3, hidden_size=128, depth=4, num_heads=4, num_classes=3)
    else:
        size, patch = args.preset.split("/")
        shape = dict(input_size=32, patch_size=int(patch), in_channels=4, num_classes=1000, **PRESETS[size])
    model = torch_sit(torch, nn, **shape)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    b, c, s = args.batch, shape["in_channels"], shape["input_size"]
    x = torch.randn(b, c, s, s)
    labels = torch.randint(0, shape["num_classes"], (b,))

    def step():
        t = torch.rand(b)
        noise = torch.randn_like(x)
        drop = torch.rand(b) < 0.1
        y = torch.where(drop, torch.full_like(labels, shape["num_classes"]), labels)
        tb = t[:, None, None, None]
        x_t, target = (1 - tb) * x + tb * noise, noise - x
        loss = ((model(x_t, t, y) - target) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    step_s = (time.perf_counter() - start) / args.steps
    params = sum(p.numel() for p in model.parameters())
    print(f"== PyTorch {torch.__version__} SiT {args.preset}: {params / 1e6:.2f}M params, batch {b}, "
          f"{torch.get_num_threads()} threads")
    print(f"step {1000 * step_s:.1f} ms | {b / step_s:.1f} samples/s")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
