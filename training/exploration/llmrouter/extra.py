"""Calibration, blends with the task prior, CV-selection reliability. Uses cached preds from run.py."""
from lib import *
import json
from scipy.stats import spearmanr
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
c = Ctx()
rows = [l.rstrip("\n").split("\t") for l in open(OUT + "/results.tsv")]
H = {json.dumps(json.loads(r[1]), sort_keys=True): r[0] for r in rows}
def load(cfg):
    h = H[json.dumps(cfg, sort_keys=True)]
    return np.load(f"preds/{h}_test.npy"), np.load(f"preds/{h}_oof.npy")
def fmt(t): return " ".join("%.4f" % x for x in t)
def sig(z): return 1 / (1 + np.exp(-z))
def logit(p): p = np.clip(p, 1e-6, 1 - 1e-6); return np.log(p / (1 - p))
prior_te, prior_oof = load({"task": "prior"})
for cfg in [{"C": 3, "task": "onehot"}, {"C": 3, "keep": None, "task": "onehot"}, {"C": 1, "soft": True, "task": "onehot"},
            {"C": 3, "soft": True, "task": "onehot"}, {"learner": "ftrl", "task": "stage2"},
            {"C": 3, "keep": 20000, "task": "none"}, {"C": 3, "task": "none"}]:
    Pte, Poof = load(cfg)
    print("==", json.dumps(cfg))
    print("  raw          test", fmt(c.evaluate(Pte)), "| util", fmt(c.evaluate(Pte, rule="utility")), "| cv", fmt(c.evaluate(Poof, c.Ytr, c.Ctr)))
    # Platt / isotonic per model on OOF predictions (target = soft score)
    Pp, Pi = np.zeros_like(Pte), np.zeros_like(Pte)
    for j in range(9):
        lr = LogisticRegression(C=100).fit(logit(Poof[:, [j]]), c.Ytr[:, j] >= 0.5)
        Pp[:, j] = lr.predict_proba(logit(Pte[:, [j]]))[:, 1]
        Pi[:, j] = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(Poof[:, j], c.Ytr[:, j]).predict(Pte[:, j]) + 1e-6 * Pte[:, j]
    print("  platt        test", fmt(c.evaluate(Pp)), "| util", fmt(c.evaluate(Pp, rule="utility")))
    print("  isotonic     test", fmt(c.evaluate(Pi)), "| util", fmt(c.evaluate(Pi, rule="utility")))
    if "none" in json.dumps(cfg): continue
    for w in (0.3, 0.5):
        B = sig((1 - w) * logit(Pte) + w * logit(prior_te)); Bo = sig((1 - w) * logit(Poof) + w * logit(prior_oof))
        print(f"  blend prior {w} test", fmt(c.evaluate(B)), "| util", fmt(c.evaluate(B, rule="utility")), "| cv", fmt(c.evaluate(Bo, c.Ytr, c.Ctr)))
# CV selection reliability
R = [(r[1], [float(x) for x in r[2:5]], [float(x) for x in r[8:11]]) for r in rows if r[8] != "nan"]
for grp, pred in (("task", lambda n: '"none"' not in n), ("prompt", lambda n: '"none"' in n)):
    S = [r for r in R if pred(r[0])]
    te = np.array([s[1] for s in S]); cv = np.array([s[2] for s in S])
    for k, nm in ((0, "F1"), (1, "F2"), (2, "F3")):
        ok = ~np.isnan(te[:, k]) & ~np.isnan(cv[:, k])
        rho = spearmanr(te[ok, k], cv[ok, k]).correlation
        sgn = -1 if k == 0 else 1
        ic = np.nanargmin(sgn * cv[:, k]); it = np.nanargmin(sgn * te[:, k])
        print(f"{grp} {nm}: n={ok.sum()} spearman(cv,test)={rho:.2f}; CV pick {S[ic][0]} test={te[ic,k]:.4f} ; test-best {S[it][0]} {te[it,k]:.4f}")
