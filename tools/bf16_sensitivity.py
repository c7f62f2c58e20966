#!/usr/bin/env python3
"""bf16_sensitivity.py - how much rounding every Linear's input to BF16 moves a model's logits.

The BF16 tensor-core prefill of the CUDA backend rounds each matmul's activations to BF16
(2^-9 relative); on an ill-conditioned fixture that alone moves the logits far beyond any
useful tolerance. This runs the float64 transformers model of a fixture (tools/make_reference.py)
on its reference prompts twice, plain and with a forward pre-hook on every nn.Linear of the
text decoder + lm_head that rounds the input to BF16, and prints the worst per-position
relative L2 difference of the logits.
Usage: python3 tools/bf16_sensitivity.py tests/fixtures/models/tiny-wc [more dirs]
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_reference import build_model  # noqa: E402


def main():
    for d in sys.argv[1:]:
        model, _ = build_model(d)
        worst_all = 0.0
        for k in range(2):
            p = os.path.join(d, "reference", f"prompt_{k}.npy")
            if not os.path.exists(p):
                break
            ids = torch.tensor([np.load(p).astype(np.int64)])
            with torch.no_grad():
                ref = model(input_ids=ids, use_cache=False).logits[0]
                hooks = [m.register_forward_pre_hook(
                    lambda mod, args: (args[0].to(torch.bfloat16).to(args[0].dtype),) + tuple(args[1:]))
                    for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
                    and ("language_model" in n or n.endswith("lm_head"))]
                got = model(input_ids=ids, use_cache=False).logits[0]
                for h in hooks:
                    h.remove()
            r = ((got - ref).norm(dim=-1) / ref.norm(dim=-1)).max().item()
            worst_all = max(worst_all, r)
            print(f"{d} prompt {k} (T={ids.shape[1]}): BF16 Linear inputs -> worst logits rel L2 {r:.3e}")
        print(f"{d}: worst {worst_all:.3e}")


if __name__ == "__main__":
    main()
