#!/usr/bin/env python3
"""Plain PyTorch (f32, KV-cached, batch 2) decode step of SimpleAR-0.5B shapes: the CPU baseline
that `npm run bench` compares our ONNX Runtime step against. Random weights; prints one JSON line.

Runs on Debian's python3-torch (/usr/bin/python3). Usage:
  /usr/bin/python3 tools/bench/torch_decode_step.py --context 2080 --steps 10 [--hidden 896 ...]
"""
import argparse
import json
import math
import os
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=896)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--heads", type=int, default=14)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=4864)
    ap.add_argument("--head-rows", type=int, default=64000, help="output head rows (visual tokens)")
    ap.add_argument("--context", type=int, default=2080, help="tokens already in the cache")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="intra-op threads (default: all cores, as ONNX Runtime)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    H, L, nH, nKV = a.hidden, a.layers, a.heads, a.kv_heads
    hd = H // nH
    I = a.intermediate
    B = 2
    maxlen = a.context + a.steps + 1

    def w(*shape):
        return torch.randn(*shape) * 0.02

    layers = []
    for _ in range(L):
        layers.append(dict(
            ln1=torch.ones(H), ln2=torch.ones(H),
            wq=w(H, H), bq=w(H), wk=w(nKV * hd, H), bk=w(nKV * hd), wv=w(nKV * hd, H), bv=w(nKV * hd),
            wo=w(H, H), wg=w(I, H), wu=w(I, H), wd=w(H, I),
            kc=torch.randn(B, nKV, maxlen, hd), vc=torch.randn(B, nKV, maxlen, hd)))
    norm = torch.ones(H)
    head = w(a.head_rows, H)
    inv_freq = 1.0 / (1e6 ** (torch.arange(0, hd, 2).float() / hd))

    def rms(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * g

    def rope(x, pos):
        freqs = pos * inv_freq
        emb = torch.cat([freqs, freqs])
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * emb.cos() + torch.cat([-x2, x1], -1) * emb.sin()

    @torch.no_grad()
    def step(h, pos):
        # h: [B, 1, H]; pos: the position of this token (same for both rows here)
        for ly in layers:
            x = rms(h, ly["ln1"])
            q = (x @ ly["wq"].T + ly["bq"]).view(B, 1, nH, hd).transpose(1, 2)
            k = (x @ ly["wk"].T + ly["bk"]).view(B, 1, nKV, hd).transpose(1, 2)
            v = (x @ ly["wv"].T + ly["bv"]).view(B, 1, nKV, hd).transpose(1, 2)
            q, k = rope(q, pos), rope(k, pos)
            ly["kc"][:, :, pos: pos + 1] = k
            ly["vc"][:, :, pos: pos + 1] = v
            K = ly["kc"][:, :, : pos + 1].repeat_interleave(nH // nKV, dim=1)
            V = ly["vc"][:, :, : pos + 1].repeat_interleave(nH // nKV, dim=1)
            att = torch.softmax((q @ K.transpose(-1, -2)) / math.sqrt(hd), dim=-1)
            o = (att @ V).transpose(1, 2).reshape(B, 1, H)
            h = h + o @ ly["wo"].T
            x = rms(h, ly["ln2"])
            h = h + (torch.nn.functional.silu(x @ ly["wg"].T) * (x @ ly["wu"].T)) @ ly["wd"].T
        return rms(h, norm) @ head.T

    h = torch.randn(B, 1, H)
    step(h, a.context)  # warm-up
    t0 = time.perf_counter()
    for i in range(a.steps):
        step(h, a.context + 1 + i)
    ms = (time.perf_counter() - t0) / a.steps * 1000
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "context": a.context,
                      "ms_per_step": round(ms, 2)}))


if __name__ == "__main__":
    main()
