"""Inference latency of frameless KD's models: classifying every node, and a batch of 1,000
nodes, with the SpatUFG teacher (and a GCN for reference) against the students (FMLP-O, FMLP-S
and a plain MLP). The FMLP students run three ways: with the graph knowledge ``M_e^k X``
precomputed (``[N, F]`` per element and power, read through the encoders: a batch reads only
its own rows), with the encoded knowledge ``enc_e(M_e^k X)`` of the trained model precomputed
(``[N, h]``; then the student is an MLP on h-wide rows plus its feature branch), and without
precomputation (the knowledge propagated on the graph at every call). CPU by default;
``--device cuda`` on a GPU.

    python experiments/frameless_latency.py --dataset cora --threads 1
    python experiments/frameless_latency.py --dataset coauthor-cs --data-dir ../shared/data \\
        --json experiments/results/frameless_latency_coauthor-cs_cpu.json

Models are freshly initialised (latency does not depend on the weights) with the table's
sizes (hidden 64, 2 layers; Haar, one level, order 6). A GNN classifies a batch by running on
the whole graph and keeping the batch's rows (its receptive field is the graph; sampling a
k-hop neighbourhood instead is a separate trade-off not timed here); so does an FMLP without
precomputed knowledge. One-off costs (the framelet operators, the knowledge precomputation)
are reported as rows of their own.
"""
from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import torch  # noqa: E402

from common import Bench, parser  # noqa: E402


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--dataset", default="cora")
    p.add_argument("--data-dir", default=os.environ.get("GKD_DATA"))
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=1000, help="nodes in the batch case")
    args = p.parse_args()
    bench = Bench(f"frameless latency ({args.dataset})", args)
    dev = bench.device
    from gkd_ext.data import load_dataset, node_features
    from gkd_ext.nn import build_model
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    x = node_features(data.x).to(dev)
    graph = data.graph.to(dev)
    n, f, c = x.size(0), x.size(1), data.num_classes
    rows = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:min(args.batch, n)].to(dev)
    tag = f"{args.dataset} N={n}"
    torch.manual_seed(0)

    def model(arch, **opts):
        return build_model(arch, f, args.hidden, c, num_layers=args.layers, **opts).to(dev).eval()

    teacher = model("spatufg")
    holder = {}
    bench.add(f"{tag} framelet operators", "one-off", lambda: holder.setdefault("ops", teacher.prepare(graph)),
              once=True, note="lambda_max + Chebyshev operators, shared by teacher and students")
    ops = holder["ops"]
    gcn = model("gcn")
    gcn_in = gcn.prepare(graph)
    mlp = model("mlp")
    students = {arch: (model(arch, knowledge="precompute"), model(arch, knowledge="propagate"))
                for arch in ("fmlp-o", "fmlp-s")}
    for arch, (pre, prop) in students.items():       # same weights in both modes
        prop.load_state_dict(pre.state_dict())

    know = {}
    bench.add(f"{tag} knowledge M^k X (K={args.layers})", "one-off",
              lambda: know.setdefault("k", ops.knowledge(x, args.layers)), once=True,
              note="precomputed once per graph and input")
    kfull = know["k"]
    krows = [[k[rows] for k in ke] for ke in kfull]
    encoded = {}
    for arch, (pre, _) in students.items():
        with torch.no_grad():
            bench.add(f"{tag} {arch.upper()} encoded knowledge", "one-off",
                      lambda m=pre, a=arch: encoded.setdefault(a, m.encodings(ops, x)), once=True,
                      note="per trained model: enc_e(M^k X) [N, h]")
    from gkd_ext.data import select_rows
    xrows = select_rows(x, rows)          # stays sparse CSR for bag-of-words features

    with torch.no_grad():
        for scope in ("all nodes", f"batch of {rows.numel()}"):
            case = f"{tag} {scope}"
            batch = scope != "all nodes"

            def pick(z):
                return z[rows] if batch else z
            ref = pick(teacher(ops, x)[0])
            bench.add(case, "SpatUFG teacher", lambda: pick(teacher(ops, x)[0]), baseline=True,
                      check=lambda: (ref, ref))
            bench.add(case, "GCN", lambda: pick(gcn(gcn_in, x)[0]))
            for arch, (pre, prop) in students.items():
                want = pick(pre(ops, x)[0])
                if batch:
                    bench.add(case, f"{arch.upper()} precomputed", lambda m=pre: m.classify(krows, xrows)[0],
                              check=lambda m=pre, w=want: (m.classify(krows, xrows)[0], w))
                else:
                    bench.add(case, f"{arch.upper()} precomputed", lambda m=pre: m.classify(kfull, x)[0],
                              check=lambda m=pre, w=want: (m.classify(kfull, x)[0], w))
                enc = encoded[arch] if not batch else [[e[rows] for e in ee] for ee in encoded[arch]]
                bench.add(case, f"{arch.upper()} encoded", lambda m=pre, e=enc, xx=(xrows if batch else x):
                          m.head(e, xx)[0], check=lambda m=pre, e=enc, w=want, xx=(xrows if batch else x):
                          (m.head(e, xx)[0], w))
                bench.add(case, f"{arch.upper()} propagated", lambda m=prop: pick(m(ops, x)[0]),
                          check=lambda m=prop, w=want: (pick(m(ops, x)[0]), w))
            xin = xrows if batch else x
            bench.add(case, "MLP", lambda: mlp(None, xin)[0])
    bench.finish()


if __name__ == "__main__":
    main()
