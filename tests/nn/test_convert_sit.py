"""Official REPA / iREPA / ERW SiT checkpoints -> Flax SiT and projectors: parity with a torch transcription."""

import argparse
import math
import pickle

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrep.align import ConvProjector, MLPProjector
from jaxrep.nn.sit import SiT
from jaxrep.weights.convert import CheckpointMismatchError, UnreadableWeightsError
from jaxrep.weights.convert_projector import projector_from_state_dict, projector_params_from_state_dict
from jaxrep.weights.convert_sit import (
    infer_sit_shape,
    load_sit_params,
    read_sit_checkpoint,
    sit_params_from_state_dict,
)
from tests.extras import import_extra

torch = import_extra("torch", "ref")
tnn = torch.nn
F = torch.nn.functional

INPUT, PATCH, CHANNELS, WIDTH, DEPTH, HEADS, CLASSES = 16, 4, 3, 32, 3, 4, 5
ENCODER_DEPTH, PROJECTOR_DIM, Z_DIM = 2, 24, 20
GRID = INPUT // PATCH


def official_pos_embed(width: int, grid: int) -> np.ndarray:
    """REPA's fixed embedding, written out: token r * grid + c gets [sin(c w), cos(c w), sin(r w), cos(r w)]."""
    omega = 1.0 / 10000 ** (np.arange(width // 4) / (width / 4))
    rows, cols = np.divmod(np.arange(grid * grid), grid)
    parts = [f(np.outer(axis, omega)) for axis in (cols, rows) for f in (np.sin, np.cos)]
    return np.concatenate(parts, axis=1)[None].astype(np.float32)


def official_rope_buffers(dim, seq):
    """EVA-02 `VisionRotaryEmbeddingFast(dim, pt_seq_len=seq)` buffers (ERW: dim = head_dim // 2), in torch."""
    freqs = 1.0 / (10000 ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
    positions = torch.arange(seq) / seq * seq
    freqs = torch.einsum("..., f -> ... f", positions, freqs).repeat_interleave(2, dim=-1)
    freqs = torch.cat([freqs[:, None, :].expand(seq, seq, dim), freqs[None, :, :].expand(seq, seq, dim)], dim=-1)
    return freqs.cos().view(-1, 2 * dim), freqs.sin().view(-1, 2 * dim)


class TorchRope(tnn.Module):
    """ERW's `feat_rope`: t * freqs_cos + rotate_half(t) * freqs_sin, pairs interleaved."""

    def __init__(self, head_dim, seq):
        super().__init__()
        freqs_cos, freqs_sin = official_rope_buffers(head_dim // 2, seq)
        self.register_buffer("freqs_cos", freqs_cos)
        self.register_buffer("freqs_sin", freqs_sin)

    def forward(self, t):
        pairs = t.unflatten(-1, (-1, 2))
        rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
        return t * self.freqs_cos + rotated * self.freqs_sin


class TorchAttention(tnn.Module):
    """timm's / ERW's Attention (fused qkv, qkv bias, optional per-head LayerNorm on q and k, then RoPE)."""

    def __init__(self, width, heads, qk_norm=False):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = tnn.Linear(width, 3 * width), tnn.Linear(width, width)
        self.q_norm = tnn.LayerNorm(width // heads) if qk_norm else tnn.Identity()
        self.k_norm = tnn.LayerNorm(width // heads) if qk_norm else tnn.Identity()

    def forward(self, x, rope=None):
        batch, tokens, width = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rope(q), rope(k)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, width))


class TorchMlp(tnn.Module):
    def __init__(self, width, hidden):
        super().__init__()
        self.fc1, self.fc2 = tnn.Linear(width, hidden), tnn.Linear(hidden, width)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


class TorchBlock(tnn.Module):
    def __init__(self, width, heads, qk_norm=False):
        super().__init__()
        self.attn, self.mlp = TorchAttention(width, heads, qk_norm), TorchMlp(width, 4 * width)
        self.adaLN_modulation = tnn.Sequential(tnn.SiLU(), tnn.Linear(width, 6 * width))

    def forward(self, x, c, rope=None):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=-1)
        norm = lambda h: F.layer_norm(h, h.shape[-1:], eps=1e-6)  # noqa: E731
        x = x + gate1[:, None] * self.attn(modulate(norm(x), shift1, scale1), rope)
        return x + gate2[:, None] * self.mlp(modulate(norm(x), shift2, scale2))


class TorchFinal(tnn.Module):
    def __init__(self, width, out):
        super().__init__()
        self.linear = tnn.Linear(width, out)
        self.adaLN_modulation = tnn.Sequential(tnn.SiLU(), tnn.Linear(width, 2 * width))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(F.layer_norm(x, x.shape[-1:], eps=1e-6), shift, scale))


class Holder(tnn.Module):
    """Holds submodules under a given attribute name (timm PatchEmbed's `proj`, LabelEmbedder's table)."""

    def __init__(self, **modules):
        super().__init__()
        for name, module in modules.items():
            setattr(self, name, module)


class TorchSiT(tnn.Module):
    """REPA's `models/sit.py` SiT, transcribed: same state-dict keys, same forward; NCHW in and out.
    With `qk_norm` / `use_rope`, ERW's `models/sit.py` options (`feat_rope` holds the RoPE buffers).

    All parameters keep torch's default random init (no adaLN-Zero), so every layer affects the output.
    """

    def __init__(self, qk_norm=False, use_rope=False):
        super().__init__()
        self.feat_rope = TorchRope(WIDTH // HEADS, GRID) if use_rope else None
        self.x_embedder = Holder(proj=tnn.Conv2d(CHANNELS, WIDTH, PATCH, stride=PATCH))
        self.t_embedder = Holder(mlp=tnn.Sequential(tnn.Linear(256, WIDTH), tnn.SiLU(), tnn.Linear(WIDTH, WIDTH)))
        self.y_embedder = Holder(embedding_table=tnn.Embedding(CLASSES + 1, WIDTH))
        self.pos_embed = tnn.Parameter(torch.from_numpy(official_pos_embed(WIDTH, GRID)), requires_grad=False)
        self.blocks = tnn.ModuleList([TorchBlock(WIDTH, HEADS, qk_norm) for _ in range(DEPTH)])
        self.projectors = tnn.ModuleList([tnn.Sequential(
            tnn.Linear(WIDTH, PROJECTOR_DIM), tnn.SiLU(), tnn.Linear(PROJECTOR_DIM, PROJECTOR_DIM), tnn.SiLU(),
            tnn.Linear(PROJECTOR_DIM, Z_DIM))])
        self.final_layer = TorchFinal(WIDTH, PATCH * PATCH * CHANNELS)

    def forward(self, x, t, y):
        h = self.x_embedder.proj(x).flatten(2).transpose(1, 2) + self.pos_embed
        half = 128
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        angles = t[:, None].float() * freqs[None]
        c = self.t_embedder.mlp(torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1))
        c = c + self.y_embedder.embedding_table(y)
        for index, block in enumerate(self.blocks):
            h = block(h, c, self.feat_rope)
            if index + 1 == ENCODER_DEPTH:
                projected = self.projectors[0](h.reshape(-1, WIDTH)).reshape(h.shape[0], h.shape[1], -1)
        out = self.final_layer(h, c).reshape(h.shape[0], GRID, GRID, PATCH, PATCH, CHANNELS)
        return torch.einsum("nhwpqc->nchpwq", out).reshape(h.shape[0], CHANNELS, INPUT, INPUT), projected


def flax_sit(**overrides):
    fields = dict(input_size=INPUT, patch_size=PATCH, in_channels=CHANNELS, hidden_size=WIDTH, depth=DEPTH,
                  num_heads=HEADS, num_classes=CLASSES)
    return SiT(**{**fields, **overrides})


def numpy_state(module):
    return {name: tensor.detach().numpy().copy() for name, tensor in module.state_dict().items()}


def inputs(batch=3):
    generator = np.random.default_rng(0)
    x = generator.standard_normal((batch, INPUT, INPUT, CHANNELS)).astype(np.float32)
    t = generator.uniform(size=batch).astype(np.float32)
    y = np.array([0, CLASSES, 2][:batch], np.int32)  # includes the null class
    return x, t, y


def chex_equal(actual, expected):
    chex.assert_trees_all_equal(actual, expected)


def relative_error(actual, expected):
    return float(np.max(np.abs(np.asarray(actual) - expected)) / np.max(np.abs(expected)))


@pytest.fixture(scope="module")
def official():
    """(torch SiT, its numpy 'model' state dict, an EMA state dict that differs from it)."""
    torch.manual_seed(0)
    module = TorchSiT().eval()
    model_state = numpy_state(module)
    generator = np.random.default_rng(1)
    ema_state = {name: value if name == "pos_embed" else value + 0.01 * generator.standard_normal(value.shape)
                 .astype(np.float32) for name, value in model_state.items()}
    return module, model_state, ema_state


def save_training_container(path, module, model_state, ema_state):
    """What REPA's train.py writes: model, ema, opt (AdamW after one step), args (a Namespace), steps."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
    output, projected = module(torch.zeros(1, CHANNELS, INPUT, INPUT), torch.zeros(1), torch.zeros(1, dtype=torch.long))
    (output.square().mean() + projected.square().mean()).backward()
    optimizer.step()
    optimizer.zero_grad()
    args = argparse.Namespace(model="SiT-XL/2", encoder_depth=ENCODER_DEPTH, qk_norm=False, proj_coeff=0.5,
                              enc_type="dinov2-vit-b", resolution=256, mixed_precision="fp16", seed=None)
    torch.save({"model": {k: torch.from_numpy(v) for k, v in model_state.items()},
                "ema": {k: torch.from_numpy(v) for k, v in ema_state.items()},
                "opt": optimizer.state_dict(), "args": args, "steps": 1234}, path)


def test_velocity_and_projection_match_torch(official):
    module, model_state, _ = official
    x, t, y = inputs()
    with torch.no_grad():
        velocity, projected = module(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(t),
                                     torch.from_numpy(y).long())
    velocity = velocity.permute(0, 2, 3, 1).numpy()
    model = flax_sit()
    params = sit_params_from_state_dict(model_state, model)
    flax_velocity, hidden = model.apply({"params": params}, x, t, y, hidden_at=ENCODER_DEPTH)
    projector = projector_from_state_dict(model_state)
    assert projector == MLPProjector(Z_DIM, PROJECTOR_DIM)
    projector_params = projector_params_from_state_dict(model_state, projector, hidden_size=WIDTH)
    flax_projected = projector.apply({"params": projector_params}, hidden)
    assert float(np.std(velocity)) > 0.1  # every layer random: a non-trivial output
    assert relative_error(flax_velocity, velocity) < 1e-5
    assert relative_error(flax_projected, projected.numpy()) < 1e-5


def test_erw_rope_and_qk_norm_match_torch():
    torch.manual_seed(2)
    module = TorchSiT(qk_norm=True, use_rope=True).eval()
    with torch.no_grad():  # QK-norm affine params away from their (1, 0) init
        for name, param in module.named_parameters():
            if "_norm." in name:
                param.add_(0.3 * torch.randn_like(param))
    state = numpy_state(module)
    assert state["feat_rope.freqs_cos"].shape == (GRID * GRID, WIDTH // HEADS)
    x, t, y = inputs()
    with torch.no_grad():
        velocity, _ = module(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(t), torch.from_numpy(y).long())
    velocity = velocity.permute(0, 2, 3, 1).numpy()
    model = flax_sit(qk_norm=True, use_rope=True)
    assert infer_sit_shape(state, num_heads=HEADS)["qk_norm"] and infer_sit_shape(state, num_heads=HEADS)["use_rope"]
    params = sit_params_from_state_dict(state, model)
    np.testing.assert_array_equal(params["blocks_2"]["attn"]["k_norm"]["scale"], state["blocks.2.attn.k_norm.weight"])
    assert float(np.std(velocity)) > 0.1
    assert relative_error(model.apply({"params": params}, x, t, y), velocity) < 1e-5
    # RoPE matters: the same weights in a SiT without it disagree with the torch model.
    assert relative_error(flax_sit(qk_norm=True).apply({"params": params}, x, t, y), velocity) > 1e-3

    with pytest.raises(CheckpointMismatchError, match=r"(?s)freqs_sin differs from the 2-D axial RoPE table"):
        sit_params_from_state_dict(dict(state, **{"feat_rope.freqs_sin": -state["feat_rope.freqs_sin"]}), model)
    swapped = np.roll(state["feat_rope.freqs_cos"], WIDTH // HEADS // 2, axis=-1)  # columns first
    with pytest.raises(CheckpointMismatchError, match=r"freqs_cos differs"):
        sit_params_from_state_dict(dict(state, **{"feat_rope.freqs_cos": swapped}), model)
    no_rope = {name: value for name, value in state.items() if not name.startswith("feat_rope.")}
    with pytest.raises(CheckpointMismatchError, match=r"use_rope=True but the checkpoint has no \['feat_rope"):
        sit_params_from_state_dict(no_rope, model)
    no_norm = {name: value for name, value in no_rope.items() if "_norm." not in name}
    with pytest.raises(CheckpointMismatchError, match=r"(?s)missing from checkpoint:.*blocks_0/attn/k_norm/bias"):
        sit_params_from_state_dict(no_norm, flax_sit(qk_norm=True))


def test_training_container_picks_ema_or_model(official, tmp_path):
    module, model_state, ema_state = official
    path = tmp_path / "0001234.pt"
    save_training_container(path, module, model_state, ema_state)
    with pytest.raises(pickle.UnpicklingError):  # plain weights_only refuses the pickled Namespace
        torch.load(path, weights_only=True)
    model = flax_sit()
    checkpoint = read_sit_checkpoint(path)
    assert (checkpoint.weights, checkpoint.step, checkpoint.args["encoder_depth"]) == ("ema", 1234, ENCODER_DEPTH)
    chex_equal(sit_params_from_state_dict(checkpoint.state_dict, model), sit_params_from_state_dict(ema_state, model))
    chex_equal(load_sit_params(path, model, weights="model"), sit_params_from_state_dict(model_state, model))


class NotAllowed:
    """A class weights_only loading must refuse (it could run code on unpickling)."""


def test_unsafe_or_odd_files_are_refused(official, tmp_path):
    _, model_state, _ = official
    path = tmp_path / "unsafe.pt"
    torch.save({"ema": {k: torch.from_numpy(v) for k, v in model_state.items()}, "args": NotAllowed()}, path)
    with pytest.raises(UnreadableWeightsError,
                       match=r"weights_only=True\) refuses it: Unsupported global: GLOBAL \S*NotAllowed \("):
        read_sit_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        read_sit_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UnreadableWeightsError, match="cannot read"):
        read_sit_checkpoint(garbage)
    with pytest.raises(UnreadableWeightsError, match="unsupported checkpoint extension"):
        read_sit_checkpoint(garbage.rename(tmp_path / "garbage.ckpt"))
    model_only = tmp_path / "model_only.pt"
    torch.save({"model": {k: torch.from_numpy(v) for k, v in model_state.items()}, "steps": 3}, model_only)
    with pytest.raises(CheckpointMismatchError, match=r"no 'ema' state dict.*\['model'\]"):
        read_sit_checkpoint(model_only)


def test_bare_safetensors_and_prefixed_files(official, tmp_path):
    from safetensors.torch import save_file

    _, model_state, _ = official
    model = flax_sit()
    expected = sit_params_from_state_dict(model_state, model)
    tensors = {k: torch.from_numpy(v) for k, v in model_state.items()}
    torch.save(tensors, tmp_path / "last.pt")
    save_file(tensors, str(tmp_path / "last.safetensors"))
    torch.save({"ema": {f"module.{k}": v for k, v in tensors.items()}}, tmp_path / "ddp.pt")
    for name in ("last.pt", "last.safetensors", "ddp.pt"):
        checkpoint = read_sit_checkpoint(tmp_path / name)
        chex_equal(sit_params_from_state_dict(checkpoint.state_dict, model), expected)
    assert read_sit_checkpoint(tmp_path / "last.pt").weights == "bare"


def test_infer_sit_shape(official):
    _, model_state, _ = official
    assert infer_sit_shape(model_state, num_heads=HEADS) == dict(
        input_size=INPUT, patch_size=PATCH, in_channels=CHANNELS, hidden_size=WIDTH, depth=DEPTH,
        num_heads=HEADS, num_classes=CLASSES, mlp_ratio=4.0, qk_norm=False, use_rope=False)
    with pytest.raises(ValueError, match="num_heads"):
        infer_sit_shape(model_state)
    wide = dict(model_state, **{"x_embedder.proj.weight": np.zeros((768, CHANNELS, PATCH, PATCH), np.float32)})
    assert infer_sit_shape(wide)["num_heads"] == 12


def test_legacy_decoder_blocks_are_renamed(official):
    """REPA's `--legacy` files: blocks after `encoder_depth` stored as `decoder_blocks.j`."""
    _, model_state, _ = official
    legacy = {}
    for name, value in model_state.items():
        parts = name.split(".")
        if parts[0] == "blocks" and int(parts[1]) >= ENCODER_DEPTH:
            parts[:2] = ["decoder_blocks", str(int(parts[1]) - ENCODER_DEPTH)]
        legacy[".".join(parts)] = value
    assert "decoder_blocks.0.attn.qkv.weight" in legacy
    model = flax_sit()
    chex_equal(sit_params_from_state_dict(legacy, model), sit_params_from_state_dict(model_state, model))


def test_options_and_mismatches_are_named(official):
    _, model_state, _ = official
    model = flax_sit()
    torch.manual_seed(1)
    erw = numpy_state(TorchSiT(qk_norm=True, use_rope=True))
    with pytest.raises(CheckpointMismatchError,
                       match=r"(?s)built without: QK-norm.*SiT\.qk_norm=True.*blocks\.0\.attn\.q_norm\.weight"
                             r".*blocks\.2\.attn\.k_norm\.bias.*built without: RoPE.*SiT\.use_rope=True.*"
                             r"feat_rope\.freqs_cos") as error:
        sit_params_from_state_dict(erw, model)
    assert "unexpected" not in str(error.value)  # the option's keys are named once, under the option
    with pytest.raises(CheckpointMismatchError, match=r"(?s)built without: RoPE.*feat_rope\.freqs_sin") as error:
        sit_params_from_state_dict(erw, flax_sit(qk_norm=True))
    assert "QK-norm" not in str(error.value)
    with pytest.raises(CheckpointMismatchError, match=r"(?s)built without: QK-norm") as error:
        sit_params_from_state_dict(erw, flax_sit(use_rope=True))
    assert "RoPE" not in str(error.value)

    broken = dict(model_state)
    broken["blocks.1.attn.proj.weight"] = np.zeros((WIDTH, WIDTH + 1), np.float32)
    del broken["final_layer.linear.bias"]
    broken["blocks.0.extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointMismatchError, match=r"(?s)shape mismatch:.*blocks\.1\.attn\.proj\.weight.*"
                       r"missing from checkpoint:\n  final_layer/linear/bias.*unexpected.*blocks\.0\.extra\.weight"):
        sit_params_from_state_dict(broken, model)
    with pytest.raises(CheckpointMismatchError, match=r"(?s)checkpoint has 3 blocks, model has 4.*missing.*blocks_3"):
        sit_params_from_state_dict(model_state, flax_sit(depth=4))
    swapped = dict(model_state, pos_embed=np.roll(model_state["pos_embed"], WIDTH // 2, axis=-1))
    with pytest.raises(CheckpointMismatchError, match="differs from the fixed 2-D sin-cos"):
        sit_params_from_state_dict(swapped, model)
    with pytest.raises(CheckpointMismatchError, match=r"pos_embed \(1, 16, 32\): model expects \(1, 64, 32\)"):
        sit_params_from_state_dict(model_state, flax_sit(input_size=2 * INPUT))


@pytest.mark.parametrize("layout", ["irepa", "irepa_mlp"])
def test_irepa_projectors(official, layout):
    _, model_state, _ = official
    generator = np.random.default_rng(2)
    tokens = generator.standard_normal((2, GRID * GRID, WIDTH)).astype(np.float32)
    if layout == "irepa_mlp":  # iREPA's ProjectionLayer("mlp") nests build_mlp under projection_layer
        state = {name.replace("projectors.0.", "projectors.0.projection_layer."): value
                 for name, value in model_state.items()}
        projector = projector_from_state_dict(state)
        reference = projector_from_state_dict(model_state)
        expected = reference.apply({"params": projector_params_from_state_dict(
            model_state, reference, hidden_size=WIDTH)}, tokens)
    else:
        conv = tnn.Conv2d(WIDTH, Z_DIM, kernel_size=3, padding=1)
        state = {"projectors.0.projection_layer.weight": conv.weight.detach().numpy(),
                 "projectors.0.projection_layer.bias": conv.bias.detach().numpy()}
        projector = projector_from_state_dict(state, grid_hw=(GRID, GRID))
        assert projector == ConvProjector(Z_DIM, 3, (GRID, GRID))
        grid = torch.from_numpy(tokens).reshape(2, GRID, GRID, WIDTH).permute(0, 3, 1, 2)
        with torch.no_grad():
            expected = conv(grid).permute(0, 2, 3, 1).reshape(2, GRID * GRID, Z_DIM).numpy()
        with pytest.raises(CheckpointMismatchError, match="a conv projector; the model's projector is an MLPProjector"):
            projector_params_from_state_dict(state, MLPProjector(Z_DIM), hidden_size=WIDTH)
        with pytest.raises(CheckpointMismatchError, match=r"(?s)shape mismatch.*projectors\.0\.weight"):
            projector_params_from_state_dict(state, projector, hidden_size=WIDTH + 4)
    params = projector_params_from_state_dict(state, projector, hidden_size=WIDTH)
    assert relative_error(projector.apply({"params": params}, jnp.asarray(tokens)), np.asarray(expected)) < 1e-5


def test_missing_and_linear_projectors_are_refused(official):
    _, model_state, _ = official
    with pytest.raises(CheckpointMismatchError, match=r"no projector 1 \(projectors present: \['0'\]"):
        projector_from_state_dict(model_state, index=1)
    linear = {"projectors.0.projection_layer.weight": np.zeros((Z_DIM, WIDTH), np.float32)}
    with pytest.raises(CheckpointMismatchError, match="linear projector"):
        projector_from_state_dict(linear)
