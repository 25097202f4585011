import os, sys, re; sys.path.insert(0,os.path.dirname(os.path.abspath(__file__)))
from load import *
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from scipy.stats import rankdata
df=load_gsm()
print(df.columns.tolist())
rs=[c for c in df.columns if c.endswith('_response')]
L={c:np.log1p(df[c].fillna('').str.len().values) for c in rs}
res={}
for seed in range(8):
    tr,te=train_test_split(np.arange(len(df)),test_size=0.3,random_state=seed)
    T=df.iloc[tr]; E=df.iloc[te]; s=E.s.values; w=E.w.values
    out={}
    for c in rs: out['true len '+c[:10]]=apgr(L[c][te],s,w)[0]
    v=TfidfVectorizer(ngram_range=(1,2),min_df=2,sublinear_tf=True); Xtr=v.fit_transform(T.prompt); Xte=v.transform(E.prompt)
    ps=LogisticRegression(C=0.3,max_iter=3000).fit(Xtr,T.s).predict_proba(Xte)[:,1]
    pw=LogisticRegression(C=0.3,max_iter=3000).fit(Xtr,T.w).predict_proba(Xte)[:,1]
    base=ps-pw; out['lr']=apgr(base,s,w)[0]
    for c in rs:
        pl=Ridge(alpha=1).fit(Xtr,L[c][tr]).predict(Xte)
        out['predlen '+c[:10]]=apgr(pl,s,w)[0]
        out['lr+predlen '+c[:10]]=apgr(rankdata(base)+rankdata(pl),s,w)[0]
    for k,vv in out.items(): res.setdefault(k,[]).append(vv)
for k,v in res.items(): print(k, round(np.mean(v),3), np.round(v,3))
