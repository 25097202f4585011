# The MMLU subject (the canonical table's `task`, sent to the service as `category`) used three
# ways: as one-hot columns fitted jointly with the text (with and without the subject at test
# time), with subject dropout in training, and as a second stage (per-subject logit offsets,
# optionally slopes, on top of the text model's logits), which the product uses.
import os, sys; sys.path.insert(0,os.path.dirname(os.path.abspath(__file__)))
from load import *
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import OneHotEncoder
from scipy.sparse import hstack, csr_matrix
df=load_mmlu()
def stage2(z,y,subj,lam_b,lam_a=None):
    # per subject: maximise loglik of sigmoid(a*z+b) - lam_b*b^2/2 - lam_a*(a-1)^2/2 (Newton)
    out={}
    for k in np.unique(subj):
        m=subj==k; zz=z[m]; yy=y[m]; a=1.0; b=0.0
        for _ in range(50):
            p=1/(1+np.exp(-(a*zz+b))); r=yy-p; W=p*(1-p)
            if lam_a is None:
                b+=(r.sum()-lam_b*b)/(W.sum()+lam_b)
            else:
                g=np.array([(r*zz).sum()-lam_a*(a-1),r.sum()-lam_b*b])
                H=np.array([[(W*zz*zz).sum()+lam_a,(W*zz).sum()],[(W*zz).sum(),W.sum()+lam_b]])
                d=np.linalg.solve(H,g); a+=d[0]; b+=d[1]
        out[k]=(a,b)
    return out
res={}
for seed in [0,1,2]:
    tr,te=train_test_split(np.arange(len(df)),test_size=0.3,random_state=seed)
    T=df.iloc[tr]; E=df.iloc[te]; s=E.s.values; w=E.w.values
    out={}
    vw=TfidfVectorizer(ngram_range=(1,2),min_df=2,sublinear_tf=True)
    Xtr=vw.fit_transform(T.prompt); Xte=vw.transform(E.prompt)
    # text model alone, and its logits for the second stage
    L={}
    for name in ['s','w']:
        m=LogisticRegression(C=0.3,max_iter=3000).fit(Xtr,T[name].values)
        L[name]=(m.decision_function(Xtr),m.decision_function(Xte),T[name].values)
    sig=lambda z: 1/(1+np.exp(-z))
    out['text']=apgr(sig(L['s'][1])-sig(L['w'][1]),s,w)[0]
    for lam in [1,5,20]:
        p={}
        for name in ['s','w']:
            ab=stage2(L[name][0],L[name][2],T.subject.values,lam)
            p[name]=sig(L[name][1]+E.subject.map(lambda k: ab[k][1]).values)
        out[f'offsets_lambda{lam}']=apgr(p['s']-p['w'],s,w)[0]
    for lam_a in [100,20]:
        p={}
        for name in ['s','w']:
            ab=stage2(L[name][0],L[name][2],T.subject.values,5,lam_a)
            p[name]=sig(E.subject.map(lambda k: ab[k][0]).values*L[name][1]+E.subject.map(lambda k: ab[k][1]).values)
        out[f'offsets+slopes_lambda{lam_a}']=apgr(p['s']-p['w'],s,w)[0]
    # joint one-hot, with subject dropout in training; scored with and without the subject
    oh=OneHotEncoder(handle_unknown='ignore').fit(T[['subject']])
    Otr=oh.transform(T[['subject']]).tocsr(); Ote=oh.transform(E[['subject']])
    Z=csr_matrix(Ote.shape); rng=np.random.RandomState(seed)
    for drop in [0.0,0.3,0.5]:
        keep=(rng.rand(len(T))>=drop).astype(float)
        B=hstack([Xtr,0.5*csr_matrix(Otr.multiply(keep[:,None]))]).tocsr()
        ms=LogisticRegression(C=0.3,max_iter=3000).fit(B,T.s); mw=LogisticRegression(C=0.3,max_iter=3000).fit(B,T.w)
        for nm,M in [('with',hstack([Xte,0.5*Ote]).tocsr()),('without',hstack([Xte,Z]).tocsr())]:
            out[f'joint_drop{drop}_{nm}']=apgr(ms.predict_proba(M)[:,1]-mw.predict_proba(M)[:,1],s,w)[0]
    for k,v in out.items(): res.setdefault(k,[]).append(v)
    print(seed,{k:round(v,3) for k,v in out.items()},flush=True)
for k,v in res.items(): print(k, round(np.mean(v),3))
