"""Featurisers and per-model fitters approximating the Rust router."""
from lib import *
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer, CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize


def text_features(Qtr, Qte, ngram=(1, 2), sublinear=True, keep=4096, min_df=2):
    """Rust-like: tf=1+ln(count) x idf, L2-normalised over ALL n-grams, then keep the
    `keep` columns with highest document frequency (df >= min_df). keep=None -> all."""
    cv = CountVectorizer(ngram_range=ngram, token_pattern=r"(?u)\b\w+\b|[^\w\s]", lowercase=True)
    Ctr = cv.fit_transform(Qtr).astype(float)
    Cte = cv.transform(Qte).astype(float)
    df = np.asarray((Ctr > 0).sum(0)).ravel()
    n = Ctr.shape[0]
    idf = np.log((1 + n) / (1 + df)) + 1
    def tf(C):
        C = C.copy()
        if sublinear:
            C.data = 1 + np.log(C.data)
        C = C @ sp.diags(idf)
        return normalize(C)
    Xtr, Xte = tf(Ctr), tf(Cte)
    cols = np.where(df >= min_df)[0]
    if keep is not None and len(cols) > keep:
        cols = cols[np.argsort(-df[cols], kind="stable")[:keep]]
    return Xtr[:, cols].tocsr(), Xte[:, cols].tocsr()


def meta_features(Q):
    L = np.array([len(q) for q in Q], float)
    dig = np.array([sum(ch.isdigit() for ch in q) for q in Q], float) / np.maximum(L, 1)
    nl = np.array([q.count("\n") for q in Q], float)
    return sp.csr_matrix(np.c_[np.log1p(L) / 8, dig, np.log1p(nl) / 4])


def task_onehot(T, tasks):
    idx = np.array([tasks.index(t) for t in T])
    return sp.csr_matrix((np.ones(len(T)), (np.arange(len(T)), idx)), shape=(len(T), len(tasks)))


def interact(X, T, tasks):
    """block copy of X per task (task x text interaction), for 'frustratingly easy' DA."""
    blocks = []
    for t in tasks:
        m = sp.diags((np.array(T) == t).astype(float))
        blocks.append(m @ X)
    return sp.hstack(blocks).tocsr()


def fit_lr(X, y, Xte, C=1.0, penalty="l2", soft=False, class_weight=None):
    """returns (train logits, test logits). soft: y in [0,1] as fractional target."""
    if soft:
        Xf = sp.vstack([X, X]).tocsr()
        yf = np.r_[np.ones(len(y)), np.zeros(len(y))]
        w = np.r_[y, 1 - y]
        keep = w > 0
        Xf, yf, w = Xf[keep], yf[keep], w[keep]
    else:
        Xf, yf, w = X, (y >= 0.5).astype(int), None
    if len(np.unique(yf)) < 2:
        c = 10.0 if yf[0] == 1 else -10.0
        return np.full(X.shape[0], c), np.full(Xte.shape[0], c)
    if penalty == "l1":
        lr = LogisticRegression(C=C, penalty="l1", solver="liblinear", max_iter=2000)
    else:
        lr = LogisticRegression(C=C, max_iter=2000)
    lr.fit(Xf, yf, sample_weight=w)
    return lr.decision_function(X), lr.decision_function(Xte)


def ftrl(X, y, Xte, alpha=0.1, beta=1.0, l1=1.0, l2=1.0, epochs=10, batch=64, soft=False, seed=0):
    """FTRL-Proximal logistic regression, summed minibatch gradients (Rust model proxy)."""
    X = X.tocsr(); d = X.shape[1]
    X = sp.hstack([X, np.ones((X.shape[0], 1))]).tocsr()
    Xte = sp.hstack([Xte, np.ones((Xte.shape[0], 1))]).tocsr()
    d += 1
    yt = y if soft else (y >= 0.5).astype(float)
    z = np.zeros(d); nn = np.zeros(d)
    rng = np.random.default_rng(seed)
    def weights():
        w = np.zeros(d)
        a = np.abs(z) > l1
        w[a] = -(z[a] - np.sign(z[a]) * l1) / ((beta + np.sqrt(nn[a])) / alpha + l2)
        return w
    for ep in range(epochs):
        order = rng.permutation(X.shape[0])
        for s in range(0, len(order), batch):
            b = order[s:s + batch]
            Xb = X[b]
            w = weights()
            p = 1 / (1 + np.exp(-np.clip(Xb @ w, -30, 30)))
            g = Xb.T @ (p - yt[b])
            sigma = (np.sqrt(nn + g * g) - np.sqrt(nn)) / alpha
            z += g - sigma * w
            nn += g * g
    w = weights()
    return X @ w, Xte @ w


def stage2_offsets(ztr, y, Ttr, zte, Tte, tasks, lam=2.0, soft=False, iters=20):
    """per-task additive logit offset on top of text logits, Newton with ridge lam."""
    yt = y if soft else (y >= 0.5).astype(float)
    Ttr = np.array(Ttr); Tte = np.array(Tte)
    out_tr, out_te = ztr.copy(), zte.copy()
    for t in tasks:
        m = Ttr == t
        b = 0.0
        for _ in range(iters):
            p = 1 / (1 + np.exp(-(ztr[m] + b)))
            g = (p - yt[m]).sum() + lam * b
            h = (p * (1 - p)).sum() + lam
            b -= g / h
        out_tr[m] += b
        out_te[Tte == t] += b
    return out_tr, out_te


def sig(z):
    return 1 / (1 + np.exp(-z))
