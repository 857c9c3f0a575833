#!/usr/bin/python3
"""Golden files for shardlm's GPT, from an independent plain-PyTorch model.

  golden.py make OUTDIR    writes OUTDIR/<case>/{model.safetensors, config.json,
                           golden.safetensors} for each case below: the weights in
                           the layout shardlm reads (HF GPT-2 for the gpt2 case),
                           and ids, targets, loss_mask, attention_mask, logits,
                           loss and every gradient ("grad.<file name>").
  golden.py check DIR...   for each DIR, reads shardlm's export in DIR (model.safetensors,
                           config.json) and DIR/expected.safetensors (ids, logits,
                           optional attention_mask), runs the reference on the
                           same ids, prints the error and exits 1 when the
                           logits differ by more than 1e-5 relative.

Run with /usr/bin/python3 (Debian's python3-torch); tests/model/test_golden.cpp
calls both modes. fp32 throughout, one thread.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt_reference as ref  # noqa: E402

torch.set_num_threads(1)

CASES = {
    # GPT-2's architecture, saved in HF's layout; odd vocabulary, T < context.
    "gpt2": dict(cfg=dict(vocab_size=67, context_length=16, n_layer=2, n_head=2, d_model=32),
                 B=2, T=12, padding=False),
    # RoPE (linear scaling), exact GELU, no biases, untied, separate Q/K/V,
    # scaled embeddings; left padding in the batch.
    "rope": dict(cfg=dict(vocab_size=50, context_length=16, n_layer=2, n_head=4, d_model=32,
                          d_ff=48, positional="rope", rope_scaling="linear",
                          rope_scaling_factor=2.0, activation="gelu", bias=False,
                          tied_embeddings=False, fused_qkv=False, scale_embeddings=True),
                 B=3, T=10, padding=True),
    # Sinusoidal positions, post-LN, SiLU, NTK is RoPE-only so none here; padding.
    "sinusoidal": dict(cfg=dict(vocab_size=40, context_length=8, n_layer=3, n_head=2, d_model=24,
                                positional="sinusoidal", pre_norm=False, activation="silu",
                                layernorm_eps=1e-6),
                       B=2, T=11, padding=True),
    # RoPE with NTK-aware scaling, ReLU, tied, fused Q/K/V.
    "rope_ntk": dict(cfg=dict(vocab_size=30, context_length=8, n_layer=1, n_head=2, d_model=16,
                              positional="rope", rope_scaling="ntk", rope_scaling_factor=4.0,
                              activation="relu", rope_theta=500.0),
                     B=2, T=16, padding=False),
}


def randomize(model, gen):
    """Non-trivial LayerNorm gains and biases, so their gradients are checked too."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                base = 1.0 if (".ln_" in name or name.startswith("ln_")) and name.endswith("weight") else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=gen))


def make(outdir):
    for case, spec in CASES.items():
        gen = torch.Generator().manual_seed(1234)
        torch.manual_seed(1234)
        cfg = ref.make_config(**spec["cfg"])
        model = ref.GPT(cfg)
        randomize(model, gen)
        B, T, V = spec["B"], spec["T"], cfg["vocab_size"]
        ids = torch.randint(0, V, (B, T), generator=gen)
        targets = torch.randint(0, V, (B, T), generator=gen)
        loss_mask = (torch.rand(B, T, generator=gen) > 0.25).long()
        attention_mask = None
        if spec["padding"]:
            attention_mask = torch.ones(B, T, dtype=torch.long)
            for b in range(1, B):  # row b has 2*b padding tokens on the left
                attention_mask[b, :2 * b] = 0
            loss_mask = loss_mask * attention_mask
        logits = model(ids, attention_mask)
        loss = ref.masked_loss(logits, targets, loss_mask)
        loss.backward()

        d = os.path.join(outdir, case)
        os.makedirs(d, exist_ok=True)
        named = {k: v.detach() for k, v in model.named_parameters()}
        ref.write_safetensors(os.path.join(d, "model.safetensors"), ref.to_file_layout(cfg, named),
                              {"format": "pt", "producer": "golden.py"})
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(ref.config_json(cfg), f, indent=2)
        grads = ref.to_file_layout(cfg, {k: v.grad for k, v in model.named_parameters()})
        out = {"ids": ids, "targets": targets, "loss_mask": loss_mask,
               "logits": logits.detach(), "loss": loss.detach().reshape(1)}
        if attention_mask is not None:
            out["attention_mask"] = attention_mask
        out.update({"grad." + k: v for k, v in grads.items()})
        ref.write_safetensors(os.path.join(d, "golden.safetensors"), out)
        print(f"{case}: loss {loss.item():.6f}, {len(grads)} gradients -> {d}")


def check(d):
    with open(os.path.join(d, "config.json")) as f:
        cfg = ref.config_from_json(json.load(f))
    tensors, meta = ref.read_safetensors(os.path.join(d, "model.safetensors"))
    expected, _ = ref.read_safetensors(os.path.join(d, "expected.safetensors"))
    model = ref.GPT(cfg)
    ref.load_file_layout(model, tensors)
    with torch.no_grad():
        logits = model(expected["ids"], expected.get("attention_mask"))
    want = expected["logits"].float()
    err = ((logits - want).abs().max() / want.abs().max().clamp(min=1e-30)).item()
    ok = err <= 1e-5
    print(json.dumps({"ok": ok, "max_rel_error": err, "producer": meta.get("producer"),
                      "tensors": len(tensors)}))
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("make", "check"):
        sys.exit(__doc__)
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        sys.exit(max(check(d) for d in sys.argv[2:]))
