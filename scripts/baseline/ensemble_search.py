#!/usr/bin/env python3
"""Which members, flips and combining rule make the best ensemble, on a validation split,
checked on a test split: reads two `facebatch eval --predictions` files of one probe card
whose members are every candidate network, with and without flip averaging (each a member
of its own, so one eval per split scores all of them), and prints, per candidate
ensemble within the cost budget, validation and test accuracy, per-source test accuracy,
female and male recall and ECE, for the plain mean, fitted weights, and fitted weights with
the recall-balancing threshold and a temperature (the steps `facebatch ensemble` fits).

    python3 scripts/baseline/ensemble_search.py VAL.parquet TEST.parquet --cost v4=79 \
        --cost dlib=49 --budget 160 [--json OUT.json]

Member names ending in `f` are the flipped twin of the name without it (cost doubled).
This is a search aid: the shipped model is built, fitted and scored by `facebatch
ensemble` itself (scripts/train-default.sh).
"""

import argparse
import itertools
import json

import numpy as np
import pyarrow.parquet as pq


def load(path):
    t = pq.read_table(path).to_pydict()
    members = sorted(
        {c[len("member_"):-len("_p_female")] for c in t if c.startswith("member_") and c.endswith("_p_female")}
    )
    ok = [p is not None for p in t["p_female"]]
    idx = [i for i, k in enumerate(ok) if k]
    y = np.array([0 if t["label"][i] == "female" else 1 for i in idx])
    probs = {m: np.array([t[f"member_{m}_p_female"][i] for i in idx], dtype=np.float64) for m in members}
    source = np.array([t["source"][i] for i in idx]) if "source" in t else np.array(["all"] * len(idx))
    return {"n_all": len(ok), "y": y, "p": probs, "source": source, "members": members}


def nll(p0, y):
    p = np.clip(np.where(y == 0, p0, 1 - p0), 1e-12, 1)
    return float(-np.log(p).mean())


def shift(p0, t):
    a = p0 * (1 - t) / t
    return a / (a + (1 - p0))


def temp(p0, t):
    l0, l1 = np.log(np.clip(p0, 1e-12, 1)) / t, np.log(np.clip(1 - p0, 1e-12, 1)) / t
    m = np.maximum(l0, l1)
    e0, e1 = np.exp(l0 - m), np.exp(l1 - m)
    return e0 / (e0 + e1)


def fit_temp(p0, y):
    ts = np.exp(np.linspace(np.log(0.05), np.log(20), 400))
    return float(min(ts, key=lambda t: nll(temp(p0, t), y)))


def ece(p0, y, bins=15):
    conf = np.maximum(p0, 1 - p0)
    pred = (p0 < 0.5).astype(int)
    right = pred == y
    e = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        sel = (conf > lo) & (conf <= hi) if b else (conf >= lo) & (conf <= hi)
        if sel.any():
            e += sel.mean() * abs(right[sel].mean() - conf[sel].mean())
    return float(e)


def recalls(p0, y):
    pred = (p0 < 0.5).astype(int)
    return [float((pred[y == k] == k).mean()) for k in (0, 1)]


def balanced(p0, y):
    best = (0.5, 9.0)
    for t in np.arange(0.300, 0.7005, 0.001):
        r = recalls(shift(p0, t), y)
        gap = abs(r[0] - r[1])
        if gap < best[1] - 1e-12 or (abs(gap - best[1]) <= 1e-12 and abs(t - 0.5) < abs(best[0] - 0.5)):
            best = (float(t), gap)
    return best[0]


def acc(p0, y, n_all):
    # End to end: faces that were not classified count as wrong.
    return float(((p0 < 0.5).astype(int) == y).sum() / n_all)


def weights_grid(k, step=0.05):
    parts = round(1 / step)
    for c in itertools.product(range(parts + 1), repeat=k - 1):
        if sum(c) <= parts:
            yield [x / parts for x in c] + [(parts - sum(c)) / parts]


def evaluate(d, combo, w, t=None, T=None):
    p0 = sum(wi * d["p"][m] for wi, m in zip(w, combo))
    if t is not None:
        p0 = shift(p0, t)
    if T is not None:
        p0 = temp(p0, T)
    return p0


def summary(d, p0):
    out = {"acc": acc(p0, d["y"], d["n_all"]), "recall": recalls(p0, d["y"]), "ece": ece(p0, d["y"])}
    per = {}
    for s in sorted(set(d["source"])):
        sel = d["source"] == s
        per[s] = float(((p0[sel] < 0.5).astype(int) == d["y"][sel]).mean())
    out["sources"] = per
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("val")
    ap.add_argument("test")
    ap.add_argument("--cost", action="append", default=[], help="NAME=MFLOP of one pass")
    ap.add_argument("--budget", type=float, default=160)
    ap.add_argument("--max-members", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    val, test = load(a.val), load(a.test)
    cost = dict((c.split("=")[0], float(c.split("=")[1])) for c in a.cost)

    def member_cost(m):
        base = m[:-1] if m not in cost and m.endswith("f") else m
        return cost[base] * (2 if base != m else 1)

    results = []
    names = val["members"]
    for k in range(1, a.max_members + 1):
        for combo in itertools.combinations(names, k):
            bases = [m[:-1] if m.endswith("f") and m[:-1] in names else m for m in combo]
            if len(set(bases)) < len(bases):
                continue  # a network and its own flipped twin
            c = sum(member_cost(m) for m in combo)
            if c > a.budget:
                continue
            mean = [1 / k] * k
            w = min(weights_grid(k), key=lambda w: nll(evaluate(val, combo, w), val["y"])) if k > 1 else [1.0]
            t = balanced(evaluate(val, combo, w), val["y"])
            T = fit_temp(evaluate(val, combo, w, t), val["y"])
            row = {"members": combo, "mflops": c, "weights": w, "threshold": t, "temperature": T}
            for name, args in (("mean", (mean,)), ("weighted", (w,)), ("fitted", (w, t, T))):
                row[name] = {"val": summary(val, evaluate(val, combo, *args)),
                             "test": summary(test, evaluate(test, combo, *args))}
            results.append(row)
    results.sort(key=lambda r: -r["fitted"]["val"]["acc"])
    print(f"{'members':34} {'MFLOP':>6} {'mean v/t':>13} {'weighted v/t':>13} {'fitted v/t':>13}  F/M rec (test)  ECE   weights")
    for r in results[:25]:
        f = r["fitted"]["test"]
        print(f"{'+'.join(r['members']):34} {r['mflops']:6.0f} "
              f"{100*r['mean']['val']['acc']:6.2f}/{100*r['mean']['test']['acc']:5.2f} "
              f"{100*r['weighted']['val']['acc']:6.2f}/{100*r['weighted']['test']['acc']:5.2f} "
              f"{100*r['fitted']['val']['acc']:6.2f}/{100*f['acc']:5.2f}  "
              f"{100*f['recall'][0]:5.1f}/{100*f['recall'][1]:5.1f}  {f['ece']:.3f} "
              f"{r['weights']} t={r['threshold']:.3f} T={r['temperature']:.2f}")
        print("    test per source: " + ", ".join(f"{s} {100*v:.1f}" for s, v in f["sources"].items()))
    if a.json:
        json.dump(results, open(a.json, "w"), indent=1, default=list)


if __name__ == "__main__":
    main()
