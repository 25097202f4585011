import os, sys, re; sys.path.insert(0,os.path.dirname(os.path.abspath(__file__)))
from load import *
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from scipy.sparse import hstack, vstack, csr_matrix
df=load_mmlu()
res={}
for seed in [0,1,2]:
    tr,te=train_test_split(np.arange(len(df)),test_size=0.3,random_state=seed)
    T=df.iloc[tr]; E=df.iloc[te]
    s=E.s.values; w=E.w.values
    out={}
    vw=TfidfVectorizer(ngram_range=(1,2),min_df=2,sublinear_tf=True)
    Xtr=vw.fit_transform(T.prompt); Xte=vw.transform(E.prompt)
    n=Xtr.shape[0]
    one=csr_matrix(np.ones((n,1)))
    for C in [0.3,1]:
      for k in [0.5,1,2]:
        # rows strong: [x, k*x, 1]; weak: [x, -k*x, 0]  -> difference 2k*x*d + bias
        A=vstack([hstack([Xtr,k*Xtr,one]),hstack([Xtr,-k*Xtr,0*one])]).tocsr()
        y=np.r_[T.s.values,T.w.values]
        m=LogisticRegression(C=C,max_iter=5000).fit(A,y)
        m1=csr_matrix(np.ones((Xte.shape[0],1)))
        ps=m.predict_proba(hstack([Xte,k*Xte,m1]).tocsr())[:,1]; pw=m.predict_proba(hstack([Xte,-k*Xte,0*m1]).tocsr())[:,1]
        out[f'mt C{C} k{k}']=apgr(ps-pw,s,w)[0]
    for kk,v in out.items(): res.setdefault(kk,[]).append(v)
    print(seed,flush=True)
for kk,v in res.items(): print(kk, round(np.mean(v),3), np.round(v,3))
