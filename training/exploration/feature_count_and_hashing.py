import os, sys, re; sys.path.insert(0,os.path.dirname(os.path.abspath(__file__)))
from load import *
from sklearn.feature_extraction.text import TfidfVectorizer, HashingVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
df=load_mmlu()
res={}
def run(Xtr,Xte,T,s,w,C=0.3):
    ps=LogisticRegression(C=C,max_iter=3000).fit(Xtr,T.s).predict_proba(Xte)[:,1]
    pw=LogisticRegression(C=C,max_iter=3000).fit(Xtr,T.w).predict_proba(Xte)[:,1]
    return apgr(ps-pw,s,w)[0]
for seed in [0,1,2]:
    tr,te=train_test_split(np.arange(len(df)),test_size=0.3,random_state=seed)
    T=df.iloc[tr]; E=df.iloc[te]
    s=E.s.values; w=E.w.values
    out={}
    for mf in [1024,4096,16384,None]:
        v=TfidfVectorizer(ngram_range=(1,2),min_df=2,sublinear_tf=True,max_features=mf)
        out[f'word mf{mf}']=run(v.fit_transform(T.prompt),v.transform(E.prompt),T,s,w)
    v=TfidfVectorizer(ngram_range=(1,1),min_df=2,sublinear_tf=True)
    out['uni']=run(v.fit_transform(T.prompt),v.transform(E.prompt),T,s,w)
    for hb in [13,16,18]:
        h=HashingVectorizer(ngram_range=(1,2),n_features=2**hb,alternate_sign=False,norm=None)
        t=TfidfTransformer(sublinear_tf=True)
        Htr=t.fit_transform(h.transform(T.prompt)); Hte=t.transform(h.transform(E.prompt))
        out[f'hash{hb}']=run(Htr,Hte,T,s,w)
    for k,v in out.items(): res.setdefault(k,[]).append(v)
    print(seed,{k:round(v,3) for k,v in out.items()},flush=True)
for k,v in res.items(): print(k, round(np.mean(v),3))
