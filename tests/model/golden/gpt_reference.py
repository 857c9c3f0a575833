"""A plain-PyTorch GPT written independently of shardlm's C++ (nanoGPT style), a
tiny pure-Python safetensors reader/writer, and the name layouts shardlm uses.

Used by golden.py (golden files and the export check) and by
bench/model/side_by_side.py (the PyTorch baseline). Needs only torch (Debian's
python3-torch); no `safetensors` or `transformers` package.
"""
import json
import math
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---- safetensors ------------------------------------------------------------------

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


def read_safetensors(path):
    """Returns ({name: tensor}, metadata). Checks offsets against the file size."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise ValueError(f"{path}: header length {n} exceeds the file")
    header = json.loads(blob[8:8 + n])
    data = memoryview(blob)[8 + n:]
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        if end > len(data):
            raise ValueError(f"{path}: tensor {name} ends past the file (truncated)")
        dtype = _DTYPES[e["dtype"]]
        raw = bytearray(data[b:end])
        t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(e["shape"]).clone()
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    header, chunks, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)


# ---- configuration ----------------------------------------------------------------------

DEFAULTS = dict(vocab_size=50257, context_length=1024, n_layer=12, n_head=12, d_model=768,
                d_ff=0, ff_mult=4.0, positional="learned", rope_theta=10000.0,
                rope_scaling="none", rope_scaling_factor=1.0, activation="gelu_tanh",
                tied_embeddings=True, scale_embeddings=False, bias=True, pre_norm=True,
                fused_qkv=True, layernorm_eps=1e-5, embd_dropout=0.0, attn_dropout=0.0,
                resid_dropout=0.0, init_std=0.02)


def make_config(**kw):
    cfg = dict(DEFAULTS)
    cfg.update(kw)
    if not cfg["d_ff"]:
        cfg["d_ff"] = int(round(cfg["ff_mult"] * cfg["d_model"]))
    return cfg


def is_gpt2(cfg):
    return (cfg["positional"] == "learned" and cfg["activation"] == "gelu_tanh" and
            cfg["pre_norm"] and cfg["tied_embeddings"] and cfg["bias"] and
            not cfg["scale_embeddings"])


def config_json(cfg):
    """config.json as shardlm writes it (HF GPT-2 form for a GPT-2 architecture)."""
    if not is_gpt2(cfg):
        return {"architectures": ["ShardlmGPT"], "model_type": "shardlm", "shardlm_config": cfg}
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
            "vocab_size": cfg["vocab_size"], "n_positions": cfg["context_length"],
            "n_ctx": cfg["context_length"], "n_embd": cfg["d_model"], "n_layer": cfg["n_layer"],
            "n_head": cfg["n_head"], "n_inner": cfg["d_ff"], "activation_function": "gelu_new",
            "layer_norm_epsilon": cfg["layernorm_eps"], "resid_pdrop": 0.0, "embd_pdrop": 0.0,
            "attn_pdrop": 0.0, "tie_word_embeddings": True, "shardlm_config": cfg}


def config_from_json(j):
    if "shardlm_config" in j:
        return make_config(**j["shardlm_config"])
    assert j["model_type"] == "gpt2", j
    return make_config(vocab_size=j["vocab_size"], context_length=j["n_positions"],
                       d_model=j["n_embd"], n_layer=j["n_layer"], n_head=j["n_head"],
                       d_ff=j.get("n_inner") or 0, layernorm_eps=j.get("layer_norm_epsilon", 1e-5))


# ---- the model ---------------------------------------------------------------------------

class LayerNorm(nn.Module):
    def __init__(self, dim, bias, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None
        self.eps = eps

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


def rope_rotate(x, cos, sin):
    """x (B, H, T, D): rotate pairs (x[i], x[i + D/2]) by the angles in cos/sin (B|1, 1, T, D/2)."""
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, b = cfg["d_model"], cfg["bias"]
        self.n_head = cfg["n_head"]
        self.fused = cfg["fused_qkv"]
        if self.fused:
            self.c_attn = nn.Linear(C, 3 * C, bias=b)
        else:
            self.q_proj = nn.Linear(C, C, bias=b)
            self.k_proj = nn.Linear(C, C, bias=b)
            self.v_proj = nn.Linear(C, C, bias=b)
        self.c_proj = nn.Linear(C, C, bias=b)
        self.attn_drop = nn.Dropout(cfg["attn_dropout"])
        self.resid_drop = nn.Dropout(cfg["resid_dropout"])

    def forward(self, x, allowed, rope):
        B, T, C = x.shape
        H = self.n_head
        if self.fused:
            q, k, v = self.c_attn(x).split(C, dim=2)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = q.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, H, C // H).transpose(1, 2)
        v = v.view(B, T, H, C // H).transpose(1, 2)
        if rope is not None:
            q, k = rope_rotate(q, *rope), rope_rotate(k, *rope)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(~allowed, float("-inf"))
        att = F.softmax(att, dim=-1)
        att = self.attn_drop(att)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = nn.Linear(cfg["d_model"], cfg["d_ff"], bias=cfg["bias"])
        self.c_proj = nn.Linear(cfg["d_ff"], cfg["d_model"], bias=cfg["bias"])
        self.act = {"gelu": nn.GELU(), "gelu_tanh": nn.GELU(approximate="tanh"), "relu": nn.ReLU(),
                    "silu": nn.SiLU()}[cfg["activation"]]
        self.drop = nn.Dropout(cfg["resid_dropout"])

    def forward(self, x):
        return self.drop(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        eps, b = cfg["layernorm_eps"], cfg["bias"]
        self.ln_1 = LayerNorm(cfg["d_model"], b, eps)
        self.attn = Attention(cfg)
        self.ln_2 = LayerNorm(cfg["d_model"], b, eps)
        self.mlp = MLP(cfg)
        self.pre_norm = cfg["pre_norm"]

    def forward(self, x, allowed, rope):
        if self.pre_norm:
            x = x + self.attn(self.ln_1(x), allowed, rope)
            return x + self.mlp(self.ln_2(x))
        x = self.ln_1(x + self.attn(x, allowed, rope))
        return self.ln_2(x + self.mlp(x))


class GPT(nn.Module):
    """Parameter names equal shardlm's own (wte.weight, blocks.N.attn.c_attn.weight, lm_head)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        C = cfg["d_model"]
        self.wte = nn.Embedding(cfg["vocab_size"], C)
        if cfg["positional"] == "learned":
            self.wpe = nn.Embedding(cfg["context_length"], C)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg["n_layer"])])
        self.ln_f = LayerNorm(C, cfg["bias"], cfg["layernorm_eps"])
        if not cfg["tied_embeddings"]:
            self.lm_head = nn.Parameter(torch.empty(cfg["vocab_size"], C))
        self.drop = nn.Dropout(cfg["embd_dropout"])
        std = cfg["init_std"]
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * cfg["n_layer"]))
            elif p.dim() == 2:
                nn.init.normal_(p, 0.0, std)

    def forward(self, ids, attention_mask=None):
        cfg = self.cfg
        B, T = ids.shape
        C, H = cfg["d_model"], cfg["n_head"]
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        if attention_mask is None:  # nanoGPT's path: one causal mask, positions 0..T-1
            pos = torch.arange(T).unsqueeze(0)
            allowed = causal
        else:  # padding: keys must be real (or the query itself); positions count real tokens
            real = attention_mask.bool()
            pos = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
            eye = torch.eye(T, dtype=torch.bool)
            allowed = (causal & (real[:, None, :] | eye))[:, None]  # (B, 1, T, T)
        x = self.wte(ids)
        if cfg["scale_embeddings"]:
            x = x * math.sqrt(C)
        rope = None
        if cfg["positional"] == "learned":
            if T > cfg["context_length"]:
                raise ValueError("sequence longer than the learned positions")
            x = x + self.wpe(pos)
        elif cfg["positional"] == "sinusoidal":
            n = int(pos.max()) + 1
            pe = torch.zeros(n, C, dtype=torch.float64)
            p = torch.arange(n, dtype=torch.float64)[:, None]
            div = torch.exp(torch.arange(0, C, 2, dtype=torch.float64) * (-math.log(10000.0) / C))
            pe[:, 0::2] = torch.sin(p * div)
            pe[:, 1::2] = torch.cos(p * div)
            x = x + pe.float()[pos]
        else:  # rope
            D = C // H
            base, s = cfg["rope_theta"], cfg["rope_scaling_factor"]
            p = pos.double()
            if cfg["rope_scaling"] == "linear":
                p = p / s
            elif cfg["rope_scaling"] == "ntk":
                base = base * s ** (D / (D - 2))
            inv = 1.0 / base ** (torch.arange(0, D, 2, dtype=torch.float64) / D)
            ang = p[:, :, None] * inv  # (B|1, T, D/2)
            rope = (ang.cos().float()[:, None], ang.sin().float()[:, None])
        x = self.drop(x)
        for blk in self.blocks:
            x = blk(x, allowed, rope)
        x = self.ln_f(x)
        w = self.wte.weight if cfg["tied_embeddings"] else self.lm_head
        return x @ w.t()


def masked_loss(logits, targets, loss_mask=None):
    V = logits.size(-1)
    if loss_mask is None:
        return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    per = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="none")
    m = loss_mask.reshape(-1).float()
    return (per * m).sum() / m.sum().clamp(min=1)


# ---- file layouts (shardlm's own, or HF GPT-2) ----------------------------------------------

_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def to_file_layout(cfg, named):
    """{shardlm name: tensor} -> {file name: tensor}, as shardlm's export_state does."""
    if not is_gpt2(cfg):
        return dict(named)
    out = {}
    for name, t in named.items():
        if name.endswith(("q_proj.weight", "q_proj.bias")):
            stem, kind = name.rsplit(".q_proj.", 1)
            t = torch.cat([t, named[f"{stem}.k_proj.{kind}"], named[f"{stem}.v_proj.{kind}"]])
            name = f"{stem}.c_attn.{kind}"
        elif ".k_proj." in name or ".v_proj." in name:
            continue
        if name.endswith(_CONV1D):
            t = t.t()
        if name.startswith("blocks."):
            name = "h." + name[len("blocks."):]
        out["transformer." + name] = t.contiguous()
    return out


def load_file_layout(model, tensors):
    """Copies file-layout tensors into the model; every parameter must be present."""
    cfg = model.cfg
    params = dict(model.named_parameters())
    want = to_file_layout(cfg, {k: v.detach() for k, v in params.items()})
    missing = [k for k in want if k not in tensors]
    if missing:
        raise KeyError(f"missing tensors {missing}")
    for k, t in want.items():
        if tuple(tensors[k].shape) != tuple(t.shape):
            raise ValueError(f"{k}: shape {tuple(tensors[k].shape)} != {tuple(t.shape)}")
    with torch.no_grad():
        for name, p in params.items():
            if not is_gpt2(cfg):
                p.copy_(tensors[name])
                continue
            fname = "transformer." + (("h." + name[len("blocks."):]) if name.startswith("blocks.") else name)
            for proj, i in (("q_proj", 0), ("k_proj", 1), ("v_proj", 2)):
                if f".{proj}." in name:
                    kind = name.rsplit(".", 1)[1]
                    fname = fname.replace(f"{proj}.{kind}", f"c_attn.{kind}")
                    src = tensors[fname]
                    src = src.t() if kind == "weight" else src
                    p.copy_(src.chunk(3, dim=0)[i])
                    break
            else:
                src = tensors[fname]
                p.copy_(src.t() if name.endswith(_CONV1D) else src)
