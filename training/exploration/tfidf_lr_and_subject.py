import os, sys; sys.path.insert(0,os.path.dirname(os.path.abspath(__file__)))
from load import *
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
df=load_mmlu()
print(len(df), df.w.mean(), df.s.mean())
res={}
for seed in [0,1,2]:
    tr,te=train_test_split(np.arange(len(df)),test_size=0.3,random_state=seed)
    T=df.iloc[tr]; E=df.iloc[te]
    vec=TfidfVectorizer(ngram_range=(1,2),min_df=2,sublinear_tf=True)
    Xtr=vec.fit_transform(T.prompt); Xte=vec.transform(E.prompt)
    s=E.s.values; w=E.w.values
    out={}
    # subject oracle
    g=(T.s-T.w).groupby(T.subject).mean()
    out['subj_gain']=apgr(E.subject.map(g).fillna(0).values+1e-9*np.random.rand(len(E)),s,w)[0]
    for C in [0.3,1,3]:
        ps=LogisticRegression(C=C,max_iter=2000).fit(Xtr,T.s).predict_proba(Xte)[:,1]
        pw=LogisticRegression(C=C,max_iter=2000).fit(Xtr,T.w).predict_proba(Xte)[:,1]
        out[f'lr_s-w C{C}']=apgr(ps-pw,s,w)[0]
    for a in [1,3,10]:
        r=Ridge(alpha=a).fit(Xtr,T.s-T.w).predict(Xte)
        out[f'ridge a{a}']=apgr(r,s,w)[0]
    # subject classifier -> gain
    clf=LogisticRegression(C=10,max_iter=3000).fit(Xtr,T.subject)
    P=clf.predict_proba(Xte)
    gv=g.reindex(clf.classes_).values
    out['subjclf_gain']=apgr(P@gv,s,w)[0]
    print('subj acc',(clf.predict(Xte)==E.subject.values).mean())
    for k,v in out.items(): res.setdefault(k,[]).append(v)
    print(seed,{k:round(v,3) for k,v in out.items()},flush=True)
for k,v in res.items(): print(k, round(np.mean(v),3))
