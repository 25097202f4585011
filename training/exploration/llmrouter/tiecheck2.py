from lib import *
import json
c = Ctx()
s = json.load(open(D+"scores_train.json")); trorder = list(s[0]["scores"].keys())
mj = list(json.load(open(D+"models.json")).keys())
orders = {"readme": MODELS, "train": trorder, "modelsjson": [m for m in mj if m in MODELS], "alpha": sorted(MODELS), "prob": None}
nonascii = sum(len(q.encode()) != len(q) for q in c.Qte); print("nonascii test prompts", nonascii)
costvars = {"chars": c.Cte, "bytes": costs([q.encode() for q in c.Qte], c.price),
            "floor": np.array([len(q)//4 + 200 for q in c.Qte])[:, None] * c.price[None] / 1e6}
for withtask in (0, 1):
    P = np.load(f"P_base_{withtask}.npy"); n = len(P)
    for cn, C in costvars.items():
        b, bs, bc = c.best(c.Yte, C)
        for name, od in orders.items():
            rank = np.array([od.index(m) for m in MODELS]) if od else -P * 1e-3
            for strict in (0,):
                pts = []
                for mg in MARGINS:
                    ok = P >= P.max(1, keepdims=True) - mg
                    key = np.where(ok, c.price[None] * 100 + rank, np.inf)
                    ch = key.argmin(1)
                    pts.append((C[np.arange(n), ch].mean() / bc, c.Yte[np.arange(n), ch].mean()))
                print(withtask, cn, name, ["%.4f" % x for x in figures(np.array(pts), bs)])
