"""Main exploration: configs x (test F1/F2/F3, 5-fold-CV-on-train F1/F2/F3).
usage: python run.py [group ...]   -> appends to results.tsv, caches P in preds/"""
import sys, time, json, hashlib
from models import *
from sklearn.model_selection import KFold

c = Ctx()
os.makedirs(OUT + "/preds", exist_ok=True)
_fcache = {}


def feats(key, Qtr, Qte, fk):
    k = (key, fk)
    if k not in _fcache:
        ng, sub, keep = fk
        _fcache[k] = text_features(Qtr, Qte, ngram=ng, sublinear=sub, keep=keep)
    return _fcache[k]


def predict(cfg, key, Qtr, Ttr, Ytr, Qte, Tte, tr_idx=None):
    fk = (cfg.get("ngram", (1, 2)), cfg.get("sublinear", True), cfg.get("keep", 4096))
    task = cfg.get("task", "none")
    if task == "prior":  # task-only: per-task mean score per model (smoothed)
        P = np.zeros((len(Qte), Ytr.shape[1]))
        for t in c.tasks:
            m = np.array(Ttr) == t
            P[np.array(Tte) == t] = (Ytr[m].sum(0) + 1) / (m.sum() + 2)
        return P
    Xtr, Xte = feats(key, Qtr, Qte, fk)
    blocks_tr, blocks_te = [Xtr], [Xte]
    if cfg.get("meta", True):
        blocks_tr.append(meta_features(Qtr)); blocks_te.append(meta_features(Qte))
    if task in ("onehot", "onehot+stage2"):
        blocks_tr.append(task_onehot(Ttr, c.tasks) * cfg.get("task_scale", 1.0))
        blocks_te.append(task_onehot(Tte, c.tasks) * cfg.get("task_scale", 1.0))
    if task == "interact":
        blocks_tr += [task_onehot(Ttr, c.tasks), interact(Xtr, Ttr, c.tasks) * cfg.get("ia", 1.0)]
        blocks_te += [task_onehot(Tte, c.tasks), interact(Xte, Tte, c.tasks) * cfg.get("ia", 1.0)]
    Atr = sp.hstack(blocks_tr).tocsr(); Ate = sp.hstack(blocks_te).tocsr()
    soft = cfg.get("soft", False)
    P = np.zeros((len(Qte), Ytr.shape[1]))
    for j in range(Ytr.shape[1]):
        y = Ytr[:, j]
        if cfg.get("learner", "lr") == "ftrl":
            ztr, zte = ftrl(Atr, y, Ate, soft=soft, l1=cfg.get("l1", 1.0), l2=cfg.get("l2", 1.0),
                            alpha=cfg.get("alpha", 0.1), epochs=cfg.get("epochs", 10))
        elif task == "pertask":
            ztr = np.zeros(len(Qtr)); zte = np.zeros(len(Qte))
            Ta, Tb = np.array(Ttr), np.array(Tte)
            for t in c.tasks:
                a, b = Ta == t, Tb == t
                if b.sum() == 0:
                    continue
                ztr[a], zte[b] = fit_lr(Atr[a], y[a], Ate[b], C=cfg.get("C", 1.0),
                                        penalty=cfg.get("penalty", "l2"), soft=soft)
        else:
            ztr, zte = fit_lr(Atr, y, Ate, C=cfg.get("C", 1.0), penalty=cfg.get("penalty", "l2"),
                              soft=soft)
        if task in ("stage2", "onehot+stage2"):
            ztr, zte = stage2_offsets(ztr, y, Ttr, zte, Tte, c.tasks, lam=cfg.get("lam", 2.0), soft=soft)
        P[:, j] = sig(zte)
    return P


def name(cfg):
    return json.dumps(cfg, sort_keys=True)


def run(cfg, do_cv=True):
    h = hashlib.md5(name(cfg).encode()).hexdigest()[:10]
    t0 = time.time()
    f = f"{OUT}/preds/{h}_test.npy"
    if os.path.exists(f):
        P = np.load(f)
    else:
        P = predict(cfg, "full", c.Qtr, c.Ttr, c.Ytr, c.Qte, c.Tte); np.save(f, P)
    te = c.evaluate(P)
    te_u = c.evaluate(P, rule="utility")
    cv = (np.nan,) * 3
    if do_cv:
        f = f"{OUT}/preds/{h}_oof.npy"
        if os.path.exists(f):
            O = np.load(f)
        else:
            O = np.zeros(c.Ytr.shape)
            Q, T = np.array(c.Qtr, dtype=object), np.array(c.Ttr, dtype=object)
            for k, (a, b) in enumerate(KFold(5, shuffle=True, random_state=0).split(Q)):
                O[b] = predict(cfg, f"fold{k}", list(Q[a]), list(T[a]), c.Ytr[a], list(Q[b]), list(T[b]))
            np.save(f, O)
        cv = c.evaluate(O, c.Ytr, c.Ctr)
    row = [h, name(cfg)] + ["%.4f" % x for x in te + te_u + cv] + ["%.0f" % (time.time() - t0)]
    print("\t".join(row), flush=True)
    with open(OUT + "/results.tsv", "a") as fh:
        fh.write("\t".join(row) + "\n")
    return te, cv


G = {}
# baseline proxy for the current Rust model (FTRL, 4096 buckets, stage2 lam2)
G["ftrl"] = [dict(learner="ftrl", task="none"), dict(learner="ftrl", task="stage2")]
G["C"] = [dict(C=C, task=t) for t in ("none", "onehot") for C in (0.3, 1, 3, 10, 30)]
G["l1"] = [dict(C=C, penalty="l1", task=t) for t in ("none", "onehot") for C in (1, 3, 10)]
G["keep"] = [dict(C=C, keep=k, task=t) for t in ("none", "onehot") for k in (20000, None) for C in (3, 10)]
G["ngram"] = [dict(C=3, ngram=ng, task=t) for t in ("none", "onehot") for ng in ((1, 1), (1, 3))] + \
             [dict(C=3, sublinear=False, task=t) for t in ("none", "onehot")] + \
             [dict(C=3, meta=False, task=t) for t in ("none", "onehot")]
G["soft"] = [dict(C=C, soft=True, task=t) for t in ("none", "onehot") for C in (1, 3, 10)]
G["task"] = [dict(task="prior")] + \
            [dict(C=C, task="stage2", lam=l) for C in (3,) for l in (0.5, 2, 10)] + \
            [dict(C=3, task="onehot+stage2")] + \
            [dict(C=3, task="onehot", task_scale=s) for s in (3, 10)] + \
            [dict(C=C, task="interact") for C in (3, 10)] + \
            [dict(C=C, task="pertask") for C in (1, 3, 10)]

G["more"] = [dict(C=1, keep=None, task="onehot"), dict(C=0.3, task="pertask"), dict(C=1, soft=True, task="pertask"),
             dict(C=1, keep=None, task="pertask"), dict(C=1, keep=20000, task="onehot"), dict(C=1, task="interact")]

if __name__ == "__main__":
    cv = "--nocv" not in sys.argv
    for g in [a for a in sys.argv[1:] if not a.startswith("--")]:
        for cfg in G[g]:
            run(cfg, do_cv=cv)
