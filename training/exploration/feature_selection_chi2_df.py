import os, sys, re; sys.path.insert(0,os.path.dirname(os.path.abspath(__file__)))
from load import *
from sklearn.feature_extraction.text import TfidfVectorizer, HashingVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.feature_selection import chi2
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
    h=HashingVectorizer(ngram_range=(1,2),n_features=2**16,alternate_sign=False,norm=None)
    t=TfidfTransformer(sublinear_tf=True)
    Htr=t.fit_transform(h.transform(T.prompt)); Hte=t.transform(h.transform(E.prompt))
    out['hash16 full']=run(Htr,Hte,T,s,w)
    cs,_=chi2(Htr,T.s); cw,_=chi2(Htr,T.w); cg,_=chi2(Htr,(T.s-T.w+1).astype(int))
    cs=np.nan_to_num(cs); cw=np.nan_to_num(cw); cg=np.nan_to_num(cg)
    sc=np.maximum(np.maximum(cs/cs.max(),cw/cw.max()),cg/cg.max())
    dfreq=np.asarray((Htr>0).sum(0)).ravel()
    for K in [1024,2048,4096,8192]:
        idx=np.argsort(-sc)[:K]
        out[f'chi K{K}']=run(Htr[:,idx],Hte[:,idx],T,s,w)
        idx=np.argsort(-dfreq)[:K]
        out[f'df K{K}']=run(Htr[:,idx],Hte[:,idx],T,s,w)
    for k,v in out.items(): res.setdefault(k,[]).append(v)
    print(seed,{k:round(v,3) for k,v in out.items()},flush=True)
for k,v in res.items(): print(k, round(np.mean(v),3))
