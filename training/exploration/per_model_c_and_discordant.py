import os, sys, re; sys.path.insert(0,os.path.dirname(os.path.abspath(__file__)))
from load import *
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
df=load_mmlu()
res={}
for seed in [0,1,2]:
    tr,te=train_test_split(np.arange(len(df)),test_size=0.3,random_state=seed)
    T=df.iloc[tr]; E=df.iloc[te]
    s=E.s.values; w=E.w.values
    out={}
    vw=TfidfVectorizer(ngram_range=(1,2),min_df=2,sublinear_tf=True)
    Xtr=vw.fit_transform(T.prompt); Xte=vw.transform(E.prompt)
    P={}
    for C in [0.1,0.3,1]:
        P[('s',C)]=LogisticRegression(C=C,max_iter=3000).fit(Xtr,T.s).predict_proba(Xte)[:,1]
        P[('w',C)]=LogisticRegression(C=C,max_iter=3000).fit(Xtr,T.w).predict_proba(Xte)[:,1]
    for cs in [0.1,0.3,1]:
        for cw in [0.1,0.3,1]:
            out[f's{cs}w{cw}']=apgr(P[('s',cs)]-P[('w',cw)],s,w)[0]
    disc=(T.s!=T.w).values
    for C in [0.1,0.3,1]:
        pd_=LogisticRegression(C=C,max_iter=3000).fit(Xtr[disc],T.s.values[disc]).predict_proba(Xte)[:,1]
        pdisc=LogisticRegression(C=C,max_iter=3000).fit(Xtr,disc).predict_proba(Xte)[:,1]
        out[f'disc{C}']=apgr(pd_,s,w)[0]
        out[f'disc*{C}']=apgr(pdisc*(2*pd_-1),s,w)[0]
    for k,v in out.items(): res.setdefault(k,[]).append(v)
    print(seed,flush=True)
for k,v in res.items(): print(k, round(np.mean(v),3), np.round(v,3))
