"""Spread of F1/F2/F3: (a) 10 training subsamples (90%, seeds 0-9) evaluated on test;
(b) per-fold figures of 5-fold CV on train (each fold ~1120 prompts, its own best model)."""
from run import *
CF = [dict(C=3, keep=None, task="onehot"), dict(learner="ftrl", task="stage2"),
      dict(C=3, task="none"), dict(C=3, keep=20000, task="none")]
for cfg in CF:
    A = []
    for s in range(10):
        idx = np.sort(np.random.default_rng(s).choice(len(c.Qtr), int(0.9 * len(c.Qtr)), replace=False))
        P = predict(cfg, f"sub{s}", [c.Qtr[i] for i in idx], [c.Ttr[i] for i in idx], c.Ytr[idx], c.Qte, c.Tte)
        A.append(c.evaluate(P))
    A = np.array(A)
    h = hashlib.md5(name(cfg).encode()).hexdigest()[:10]
    O = np.load(f"preds/{h}_oof.npy")
    B = []
    for k, (a, b) in enumerate(KFold(5, shuffle=True, random_state=0).split(c.Qtr)):
        B.append(c.evaluate(O[b], c.Ytr[b], c.Ctr[b]))
    B = np.array(B)
    f = lambda M: " ".join("%.3f±%.3f[%.3f,%.3f]" % (np.nanmean(M[:, k]), np.nanstd(M[:, k]), np.nanmin(M[:, k]), np.nanmax(M[:, k])) for k in range(3))
    print(name(cfg), "\n  subsample->test:", f(A), "nan:", np.isnan(A).sum(0), "\n  cv folds       :", f(B), "nan:", np.isnan(B).sum(0), flush=True)
    import run as _r; _r._fcache.clear()
