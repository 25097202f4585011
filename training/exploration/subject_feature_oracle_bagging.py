import os, sys, re; sys.path.insert(0,os.path.dirname(os.path.abspath(__file__)))
from load import *
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import OneHotEncoder
from scipy.sparse import hstack, csr_matrix
df=load_mmlu()
res={}
for seed in [0,1,2]:
    tr,te=train_test_split(np.arange(len(df)),test_size=0.3,random_state=seed)
    T=df.iloc[tr]; E=df.iloc[te]
    s=E.s.values; w=E.w.values
    out={}
    gt=(E.s-E.w).groupby(E.subject).mean()
    out['true_subj_oracle']=apgr(E.subject.map(gt).values+1e-9*np.random.rand(len(E)),s,w)[0]
    vw=TfidfVectorizer(ngram_range=(1,2),min_df=2,sublinear_tf=True)
    Xtr=vw.fit_transform(T.prompt); Xte=vw.transform(E.prompt)
    oh=OneHotEncoder(handle_unknown='ignore').fit(T[['subject']])
    Otr=oh.transform(T[['subject']]); Ote=oh.transform(E[['subject']])
    for sc in [1,3]:
        B=hstack([Xtr,sc*Otr]).tocsr(); Bt=hstack([Xte,sc*Ote]).tocsr()
        ps=LogisticRegression(C=0.3,max_iter=3000).fit(B,T.s).predict_proba(Bt)[:,1]
        pw=LogisticRegression(C=0.3,max_iter=3000).fit(B,T.w).predict_proba(Bt)[:,1]
        out[f'lr+subj{sc}']=apgr(ps-pw,s,w)[0]
    # bagging
    acc=np.zeros(len(E))
    rng=np.random.RandomState(0)
    for b in range(10):
        ii=rng.choice(len(T),len(T),replace=True)
        ps=LogisticRegression(C=0.3,max_iter=3000).fit(Xtr[ii],T.s.values[ii]).predict_proba(Xte)[:,1]
        pw=LogisticRegression(C=0.3,max_iter=3000).fit(Xtr[ii],T.w.values[ii]).predict_proba(Xte)[:,1]
        acc+=ps-pw
    out['bag10']=apgr(acc,s,w)[0]
    for k,v in out.items(): res.setdefault(k,[]).append(v)
    print(seed,{k:round(v,3) for k,v in out.items()},flush=True)
for k,v in res.items(): print(k, round(np.mean(v),3))
