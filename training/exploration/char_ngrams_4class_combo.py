import os, sys; sys.path.insert(0,os.path.dirname(os.path.abspath(__file__)))
from load import *
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from scipy.sparse import hstack
from scipy.stats import rankdata
df=load_mmlu()
res={}
for seed in [0,1,2]:
    tr,te=train_test_split(np.arange(len(df)),test_size=0.3,random_state=seed)
    T=df.iloc[tr]; E=df.iloc[te]
    s=E.s.values; w=E.w.values
    out={}
    vw=TfidfVectorizer(ngram_range=(1,2),min_df=2,sublinear_tf=True)
    Xtr=vw.fit_transform(T.prompt); Xte=vw.transform(E.prompt)
    vc=TfidfVectorizer(analyzer='char_wb',ngram_range=(2,5),min_df=3,sublinear_tf=True,max_features=200000)
    Ctr=vc.fit_transform(T.prompt); Cte=vc.transform(E.prompt)
    def lr(Xa,Xb,C):
        ps=LogisticRegression(C=C,max_iter=3000).fit(Xa,T.s).predict_proba(Xb)[:,1]
        pw=LogisticRegression(C=C,max_iter=3000).fit(Xa,T.w).predict_proba(Xb)[:,1]
        return ps-pw
    for C in [0.03,0.1,0.3]:
        out[f'word C{C}']=apgr(lr(Xtr,Xte,C),s,w)[0]
    for C in [0.1,0.3,1]:
        out[f'char C{C}']=apgr(lr(Ctr,Cte,C),s,w)[0]
    B=hstack([Xtr,Ctr]).tocsr(); Bt=hstack([Xte,Cte]).tocsr()
    for C in [0.1,0.3]:
        out[f'both C{C}']=apgr(lr(B,Bt,C),s,w)[0]
    # multinomial 4 class
    y4=(T.w*2+T.s).astype(int)
    m=LogisticRegression(C=0.3,max_iter=3000).fit(Xtr,y4); P=m.predict_proba(Xte)
    cl=list(m.classes_); out['4class']=apgr(P[:,cl.index(1)]-P[:,cl.index(2)],s,w)[0]
    # subject gain combo
    g=(T.s-T.w).groupby(T.subject).mean()
    clf=LogisticRegression(C=10,max_iter=3000).fit(Xtr,T.subject)
    sg=clf.predict_proba(Xte)@g.reindex(clf.classes_).values
    base=lr(Xtr,Xte,0.3)
    for a in [0.5,1,2]:
        out[f'combo a{a}']=apgr(base+a*sg,s,w)[0]
    for k,v in out.items(): res.setdefault(k,[]).append(v)
    print(seed,{k:round(v,3) for k,v in out.items()},flush=True)
for k,v in res.items(): print(k, round(np.mean(v),3))
