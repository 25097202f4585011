import sys; from lib import *
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
c = Ctx()
b, bs, bc = c.best(c.Yte, c.Cte); print("best", c.models[b], bs)
for withtask in (False, True):
    f = (lambda q, t: t + " " + q) if withtask else (lambda q, t: q)
    Xtr_t = [f(q, t) for q, t in zip(c.Qtr, c.Ttr)]; Xte_t = [f(q, t) for q, t in zip(c.Qte, c.Tte)]
    v = TfidfVectorizer(ngram_range=(1, 2)); Xtr = v.fit_transform(Xtr_t); Xte = v.transform(Xte_t)
    P = np.zeros(c.Yte.shape)
    for j in range(len(c.models)):
        lr = LogisticRegression(max_iter=1000).fit(Xtr, c.Ytr[:, j] >= 0.5)
        P[:, j] = lr.predict_proba(Xte)[:, 1]
    for tie in ("prob", "order"):
        print("task" if withtask else "prompt", tie, ["%.4f" % x for x in c.evaluate(P, tie=tie)])
