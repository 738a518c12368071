"""Private inference with CrypTen, every random tuple from Larder.

Two sites hold different features of the same patients (site 0 the first half, site 1 the
rest); a published two-layer network (16 -> 32, ReLU, 32 -> 1, sigmoid) scores them without
either site seeing the other's features. Three CrypTen ranks, one per party; rank ``p`` takes
its triples, squares, binary triples, wraps and daBits from party ``p``'s Larder node, so
CrypTen's own trusted first party is never asked.

Run one process per rank (``larder demo`` must be serving)::

    for r in 0 1 2; do
      python crypten_mlp.py --rank $r --demo larder-demo --rendezvous file:///tmp/mlp-rdv &
    done; wait

``--provider tfp`` runs the same with CrypTen's trusted first party instead, for comparison.
``--private-model``: the model's owner (site 2) encrypts the weights too, so both layers
multiply two private matrices and take matrix triples (pools
``matrix-triple-z64-<patients>x16x32`` and ``matrix-triple-z64-<patients>x32x1``).
Rank 0 prints the result against plaintext as one JSON line (and writes it to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch


def published_model(seed: int = 7):
    """The network and some patients: trained in plaintext on synthetic data (the same at every
    site, as if the model owner had published it)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6000, 16, generator=g)
    w = torch.randn(16, generator=g)
    y = ((x @ w + 2.0 * torch.sin(2.0 * x[:, 0]) * x[:, 1]) > 0).float()
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[:5000]).squeeze(1), y[:5000])
        loss.backward()
        opt.step()
    return net, x[5000:], y[5000:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rank", type=int, required=True)
    ap.add_argument("--world", type=int, default=3)
    ap.add_argument("--rendezvous", required=True, help="torch.distributed init method, e.g. file:///tmp/rdv")
    ap.add_argument("--demo", help="the directory larder demo wrote")
    ap.add_argument("--consortium", help="JSON: ca, parties[].url, parties[].token_file")
    ap.add_argument("--provider", choices=["larder", "tfp"], default="larder")
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--private-model", action="store_true", help="site 2 encrypts the weights too")
    ap.add_argument("--out", help="rank 0 writes its JSON report here")
    ap.add_argument(
        "--corrupt", action="store_true", help="test only: add 2^40 to rank 0's c share of every triple"
    )
    args = ap.parse_args()

    os.environ.update(
        RANK=str(args.rank),
        WORLD_SIZE=str(args.world),
        RENDEZVOUS=args.rendezvous,
        DISTRIBUTED_BACKEND="gloo",
    )
    import crypten

    net, x, y = published_model()
    x, y = x[: args.patients], y[: args.patients]
    crypten.init()
    provider = None
    if args.provider == "larder":
        import larder_client.crypten as lc

        if args.consortium:
            with open(args.consortium, encoding="utf-8") as f:
                c = json.load(f)
            provider = lc.install(
                urls=[p["url"] for p in c["parties"]],
                token_files=[p["token_file"] for p in c["parties"]],
                ca=c["ca"],
            )
        else:
            provider = lc.install(demo=args.demo)
        if args.corrupt and args.rank == 0:
            take = lc._Pool.take

            def corrupted(self, n):
                rows = take(self, n)
                if self.pool == provider.pools["triple"]:
                    rows = rows.copy()
                    rows[:, 2] += 1 << 40
                return rows

            lc._Pool.take = corrupted
    else:
        crypten.cfg.mpc.provider = "TFP"

    w1, b1 = net[0].weight.detach(), net[0].bias.detach()
    w2, b2 = net[2].weight.detach(), net[2].bias.detach()
    half = x.shape[1] // 2
    start = time.perf_counter()
    # Site 0 encrypts its features, site 1 its own; nobody else sees them.
    enc = crypten.cat(
        [crypten.cryptensor(x[:, :half], src=0), crypten.cryptensor(x[:, half:], src=1)], dim=1
    )
    if args.private_model:
        # The model's owner encrypts its weights; nobody else sees them.
        w1, b1, w2, b2 = (crypten.cryptensor(t, src=2) for t in (w1.t(), b1, w2.t(), b2))
    else:
        w1, w2 = w1.t(), w2.t()
    hidden = (enc.matmul(w1) + b1).relu()
    score = (hidden.matmul(w2) + b2).sigmoid()
    private = score.get_plain_text().squeeze(1)
    seconds = time.perf_counter() - start

    with torch.no_grad():
        plain = torch.sigmoid(net(x)).squeeze(1)
    report = {
        "provider": args.provider,
        "private_model": args.private_model,
        "patients": len(x),
        "seconds": round(seconds, 3),
        "max_abs_error": float((private - plain).abs().max()),
        "same_decisions": int(((private > 0.5) == (plain > 0.5)).sum()),
        "accuracy_private": float(((private > 0.5).float() == y).float().mean()),
        "accuracy_plaintext": float(((plain > 0.5).float() == y).float().mean()),
    }
    if provider is not None:
        report["larder_items"] = provider.usage()
        report["fallbacks"] = provider.fallbacks
        report["waited_seconds"] = provider.waited
        provider.close()
    if args.rank == 0:
        print(json.dumps(report))
        if args.out:
            with open(args.out, "w", encoding="utf-8") as f:
                json.dump(report, f)
    # Every rank waits for the others to finish before exiting. (Not crypten.uninit(): with a
    # file rendezvous, torch 2.0's destroy_process_group can hang once another rank has left.)
    crypten.communicator.get().barrier()
    return 0


if __name__ == "__main__":
    sys.exit(main())
