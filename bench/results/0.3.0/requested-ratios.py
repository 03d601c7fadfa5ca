# Issue 11's targets from mrkey-bench JSON runs: median over the runs of
# each run's own ratio (mrkey-requested against the baseline, same run).
import json, sys, statistics as st

runs = [json.load(open(f)) for f in sys.argv[1:]]


def ns(rs, sc, impl, th, reg=None):
    for r in rs:
        if (r['scenario'] == sc and r['impl'] == impl and r['threads'] == th
                and (reg is None or r['regions'] == reg)):
            return r['ns_per_op']
    raise KeyError((sc, impl, th, reg))


def show(name, vals):
    print(f"{name:58s} median {st.median(vals):5.2f}  runs "
          + " ".join(f"{v:.2f}" for v in vals))


R = 65536
show("lookup-random 64K 1 thr: throughput x rbtree-mutex (>= 5)",
     [ns(r, 'lookup-random', 'rbtree-mutex', 1, R) / ns(r, 'lookup-random', 'mrkey-requested', 1, R) for r in runs])
show("lookup-random 64K 1 thr: throughput x lfht (>= 1)",
     [ns(r, 'lookup-random', 'lfht', 1, R) / ns(r, 'lookup-random', 'mrkey-requested', 1, R) for r in runs])
show("lookup-random 64K 2 thr: throughput x rbtree-mutex (>= 20)",
     [ns(r, 'lookup-random', 'rbtree-mutex', 2, R) / ns(r, 'lookup-random', 'mrkey-requested', 2, R) for r in runs])
show("churn 1 thr: time / rbtree-mutex's (<= 2)",
     [ns(r, 'churn', 'mrkey-requested', 1) / ns(r, 'churn', 'rbtree-mutex', 1) for r in runs])
for th in (1, 2):
    show(f"lookup-grow {th} reader(s): time with writer / without (<= 1.3)",
         [ns(r, 'lookup-grow', 'mrkey-requested', th) / ns(r, 'lookup-no-grow', 'mrkey-requested', th) for r in runs])
