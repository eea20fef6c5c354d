"""Is training bit-reproducible across ATen CPU kernels? Trains a tiny dropout MLP with the
R-Drop loss (``rdrop_torch.fused``, torch only) for a few Adam steps under each
ATEN_CPU_CAPABILITY, twice each, and prints the final loss and a digest of the weights.

    python scripts/kernel_rounding.py            # compares avx2, avx512 and default (runs 6 children)

Same capability and thread count: identical digests. Different capabilities: ATen's vectorised
kernels (exp, log, sums) round differently, so the weights differ in their last bits after a
step, and the difference grows with training (docs/reproducibility.md).
"""
import hashlib
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # this checkout's rdrop_fairseq


def train(steps=50):
    import torch

    from rdrop_torch.fused import fused_rdrop_loss

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 256), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                torch.nn.Linear(256, 1000))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(64, 32)
    y = torch.randint(0, 1000, (64,))
    for _ in range(steps):
        logits = model(torch.cat([x, x]))  # R-Drop: the batch twice, two dropout masks
        loss, _, _ = fused_rdrop_loss(logits, y, num_passes=2, alpha=1.0, epsilon=0.1, ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters()))
    return float(loss), digest.hexdigest()[:16]


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        loss, digest = train()
        print(f"{loss!r} {digest}")
        return
    print("ATEN_CPU_CAPABILITY  run  final loss           weights sha256[:16]")
    for capability in ("avx2", "avx512", "default"):
        for run in (1, 2):
            env = dict(os.environ, ATEN_CPU_CAPABILITY=capability, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child"], cwd=REPO, env=env,
                                 capture_output=True, text=True, check=True).stdout.split()
            print(f"{capability:<20} {run:<4} {out[0]:<20} {out[1]}")


if __name__ == "__main__":
    main()
