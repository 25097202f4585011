import os
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
import json
import numpy as np

# Results and cached predictions go to $EXPLORE_OUT (default /tmp/explore-llmrouter), which
# becomes the working directory, so the scripts' relative paths land there.
OUT = os.path.abspath(os.environ.get("EXPLORE_OUT", "/tmp/explore-llmrouter"))
D = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "shared", "datasets", "llmrouter", "")
MODELS = ["qwen2.5-7b-instruct", "llama3-chatqa-1.5-8b", "llama-3.1-nemotron-51b-instruct",
          "llama3-chatqa-1.5-70b", "mistral-7b-instruct-v0.3", "gemma-2-9b-it", "codegemma-7b",
          "llama-3.1-8b-instruct", "llama-3.3-nemotron-super-49b-v1"]


def load(split):
    s = json.load(open(D + f"scores_{split}.json"))
    task = {}
    for line in open(D + f"queries_{split}.jsonl"):
        o = json.loads(line)
        task.setdefault(o["query"], o["task_name"])  # first occurrence wins
    models = MODELS
    Q = [r["question"] for r in s]
    Y = np.array([[r["scores"][m] for m in models] for r in s], dtype=float)
    T = [task[q] for q in Q]
    return Q, T, Y, models


def prices(models):
    m = json.load(open(D + "models.json"))
    return np.array([m[k]["input_price"] for k in models], dtype=float)


os.makedirs(OUT, exist_ok=True)
os.chdir(OUT)


def costs(Q, price):
    L = np.array([len(q) / 4 + 200 for q in Q])
    return L[:, None] * price[None, :] / 1e6  # n x M


MARGINS = np.arange(401) / 400.0


def route_margin(P, price, margin, tie="prob"):
    """cheapest model whose p >= max p - margin; ties in price broken by higher p."""
    mx = P.max(1, keepdims=True)
    ok = P >= mx - margin - 1e-12
    if tie == "prob":
        key = price[None, :] * 10.0 - P * 1e-3  # price dominates; p breaks ties
    else:
        key = np.broadcast_to(price[None, :] + np.arange(len(price))[None, :] * 1e-6, P.shape)
    key = np.where(ok, key, np.inf)
    return key.argmin(1)


def curve(P, Y, C, price, cbest_mean, rule="margin", lams=None, tie="prob"):
    n = len(Y)
    pts = []
    if rule == "margin":
        for m in MARGINS:
            ch = route_margin(P, price, m, tie)
            pts.append((C[np.arange(n), ch].mean() / cbest_mean, Y[np.arange(n), ch].mean()))
    elif rule == "utility":
        pb = price / price.max()
        if lams is None:
            lams = np.concatenate([[0], np.geomspace(1e-4, 10, 400)])
        for l in lams:
            u = P - l * pb[None, :]
            ch = u.argmax(1)
            pts.append((C[np.arange(n), ch].mean() / cbest_mean, Y[np.arange(n), ch].mean()))
    return np.array(pts)


def figures(pts, best_score):
    o = np.lexsort((pts[:, 1], pts[:, 0]))
    p = pts[o]
    x, y = p[:, 0], p[:, 1]
    # F1: max score at relative cost <= 1
    f1 = y[x <= 1].max() if (x <= 1).any() else np.nan
    for i in range(len(x) - 1):
        if x[i] <= 1 < x[i + 1]:
            yi = y[i] + (y[i + 1] - y[i]) * (1 - x[i]) / (x[i + 1] - x[i])
            f1 = max(f1, yi)
    res = [f1]
    for frac in (0.95, 1.0):
        t = frac * best_score - 1e-12
        val = np.nan
        for i in range(len(x)):
            if y[i] >= t:
                if i == 0:
                    val = x[0]
                else:
                    val = x[i - 1] + (x[i] - x[i - 1]) * (t - y[i - 1]) / (y[i] - y[i - 1])
                break
        res.append(val)
    return tuple(res)


class Ctx:
    def __init__(self):
        self.Qtr, self.Ttr, self.Ytr, self.models = load("train")
        self.Qte, self.Tte, self.Yte, m2 = load("test")
        assert m2 == self.models
        self.price = prices(self.models)
        self.Ctr = costs(self.Qtr, self.price)
        self.Cte = costs(self.Qte, self.price)
        self.tasks = sorted(set(self.Ttr))

    def best(self, Y, C):
        b = Y.mean(0).argmax()
        return b, Y[:, b].mean(), C[:, b].mean()

    def evaluate(self, P, Y=None, C=None, rule="margin", tie="prob"):
        if Y is None:
            Y, C = self.Yte, self.Cte
        b, bs, bc = self.best(Y, C)
        pts = curve(P, Y, C, self.price, bc, rule=rule, tie=tie)
        return figures(pts, bs)
