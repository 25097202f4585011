import os, sys, re; sys.path.insert(0,os.path.dirname(os.path.abspath(__file__)))
from load import *
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split, KFold
from sklearn.neighbors import NearestNeighbors
from scipy.stats import rankdata
import lightgbm as lgb
df=load_mmlu()
def meta(t):
    lines=t.split('\n')
    return [len(t), t.count('\n'), sum(c.isdigit() for c in t), len(re.findall(r'\d+\.?\d*',t)), t.count('$'), t.count('='),
            len(re.findall(r'\b(not|NOT|except|EXCEPT)\b',t)), t.count('?'), len(t.split()), np.mean([len(l) for l in lines]),
            sum(1 for c in t if c in '+-*/^()'), t.count('Statement')]
M=np.array([meta(t) for t in df.prompt])
res={}
for seed in [0,1,2]:
    tr,te=train_test_split(np.arange(len(df)),test_size=0.3,random_state=seed)
    T=df.iloc[tr]; E=df.iloc[te]
    s=E.s.values; w=E.w.values
    out={}
    vw=TfidfVectorizer(ngram_range=(1,2),min_df=2,sublinear_tf=True)
    Xtr=vw.fit_transform(T.prompt); Xte=vw.transform(E.prompt)
    def lr(Xa,ya_s,ya_w,Xb,C=0.3):
        ps=LogisticRegression(C=C,max_iter=3000).fit(Xa,ya_s).predict_proba(Xb)[:,1]
        pw=LogisticRegression(C=C,max_iter=3000).fit(Xa,ya_w).predict_proba(Xb)[:,1]
        return ps,pw
    ps,pw=lr(Xtr,T.s,T.w,Xte); base=ps-pw
    out['lr']=apgr(base,s,w)[0]
    # knn
    nn=NearestNeighbors(n_neighbors=50,metric='cosine').fit(Xtr)
    dist,idx=nn.kneighbors(Xte)
    gtr=(T.s-T.w).values
    for k in [10,50]:
        out[f'knn{k}']=apgr(gtr[idx[:,:k]].mean(1)+1e-9*np.random.rand(len(E)),s,w)[0]
    out['lr+knn50']=apgr(rankdata(base)+0.5*rankdata(gtr[idx].mean(1)),s,w)[0]
    # OOF stacking
    oof=np.zeros((len(T),2))
    for a,b in KFold(5,shuffle=True,random_state=0).split(Xtr):
        p1,p2=lr(Xtr[a],T.s.values[a],T.w.values[a],Xtr[b]); oof[b,0]=p1; oof[b,1]=p2
    Ftr=np.hstack([oof,M[tr]]); Fte=np.hstack([np.c_[ps,pw],M[te]])
    for target in ['gain']:
        ms=lgb.LGBMClassifier(n_estimators=300,learning_rate=0.03,num_leaves=15,min_child_samples=50,verbose=-1).fit(Ftr,T.s)
        mw=lgb.LGBMClassifier(n_estimators=300,learning_rate=0.03,num_leaves=15,min_child_samples=50,verbose=-1).fit(Ftr,T.w)
        out['stack_lgb']=apgr(ms.predict_proba(Fte)[:,1]-mw.predict_proba(Fte)[:,1],s,w)[0]
    ms=lgb.LGBMClassifier(n_estimators=300,learning_rate=0.03,num_leaves=15,min_child_samples=50,verbose=-1).fit(M[tr],T.s)
    mw=lgb.LGBMClassifier(n_estimators=300,learning_rate=0.03,num_leaves=15,min_child_samples=50,verbose=-1).fit(M[tr],T.w)
    out['meta_lgb']=apgr(ms.predict_proba(M[te])[:,1]-mw.predict_proba(M[te])[:,1],s,w)[0]
    for k,v in out.items(): res.setdefault(k,[]).append(v)
    print(seed,{k:round(v,3) for k,v in out.items()},flush=True)
for k,v in res.items(): print(k, round(np.mean(v),3))
