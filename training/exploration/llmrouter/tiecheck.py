from lib import *
import json, itertools
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
c = Ctx()
s = json.load(open(D+"scores_train.json")); trorder = list(s[0]["scores"].keys())
mj = list(json.load(open(D+"models.json")).keys())
orders = {"readme": MODELS, "train": trorder, "modelsjson": [m for m in mj if m in MODELS], "alpha": sorted(MODELS)}
orders["readme_rev"] = MODELS[::-1]
for withtask in (False, True):
    f = (lambda q, t: t + " " + q) if withtask else (lambda q, t: q)
    v = TfidfVectorizer(ngram_range=(1, 2)); Xtr = v.fit_transform([f(q, t) for q, t in zip(c.Qtr, c.Ttr)]); Xte = v.transform([f(q, t) for q, t in zip(c.Qte, c.Tte)])
    P = np.zeros(c.Yte.shape)
    for j in range(9):
        P[:, j] = LogisticRegression(max_iter=1000).fit(Xtr, c.Ytr[:, j] >= 0.5).predict_proba(Xte)[:, 1]
    np.save(f"P_base_{int(withtask)}.npy", P)
    b, bs, bc = c.best(c.Yte, c.Cte)
    n = len(P)
    for name, od in orders.items():
        rank = np.array([od.index(m) for m in MODELS])
        pts = []
        for mg in MARGINS:
            ok = P >= P.max(1, keepdims=True) - mg
            key = np.where(ok, c.price[None] * 100 + rank[None], np.inf)
            ch = key.argmin(1)
            pts.append((c.Cte[np.arange(n), ch].mean() / bc, c.Yte[np.arange(n), ch].mean()))
        print(withtask, name, ["%.4f" % x for x in figures(np.array(pts), bs)])
