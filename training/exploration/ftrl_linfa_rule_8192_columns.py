import os, sys, re; sys.path.insert(0,os.path.dirname(os.path.abspath(__file__)))
from load import *
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.model_selection import train_test_split
from scipy.sparse import hstack, csr_matrix
df=load_mmlu()
def ftrl(X,y,alpha,beta,l1,l2,epochs,bs,seed=0,init=True):
    d=X.shape[1]; n=np.zeros(d)
    z=np.random.RandomState(123).uniform(0,1,d) if init else np.zeros(d)
    rng=np.random.RandomState(seed)
    W=lambda: np.where(np.abs(z)<=l1,0,(np.sign(z)*l1-z)/((np.sqrt(n)+beta)/alpha+l2))
    for ep in range(epochs):
        perm=rng.permutation(X.shape[0])
        for k in range(0,len(perm),bs):
            ii=perm[k:k+bs]; Xb=X[ii]
            wts=W()
            p=1/(1+np.exp(-np.clip(Xb@wts,-35,35)))
            g=Xb.T@(p-y[ii])
            sig=(np.sqrt(n+g*g)-np.sqrt(n))/alpha
            z+=g-sig*wts; n+=g*g
    return W()
res={}
for seed in [0,1]:
    tr,te=train_test_split(np.arange(len(df)),test_size=0.3,random_state=seed)
    T=df.iloc[tr]; E=df.iloc[te]
    s=E.s.values; w=E.w.values
    h=HashingVectorizer(ngram_range=(1,2),n_features=2**16,alternate_sign=False,norm=None)
    t=TfidfTransformer(sublinear_tf=True)
    Htr=t.fit_transform(h.transform(T.prompt)); Hte=t.transform(h.transform(E.prompt))
    dfreq=np.asarray((Htr>0).sum(0)).ravel(); idx=np.argsort(-dfreq)[:8192]
    Htr=Htr[:,idx]; Hte=Hte[:,idx]
    Htr=hstack([Htr,np.ones((Htr.shape[0],1))]).tocsr(); Hte=hstack([Hte,np.ones((Hte.shape[0],1))]).tocsr()
    out={}
    for (a,b,l1,l2,ep,bs,init) in [(0.1,1,0,1,10,32,False),(0.1,1,0,1,10,32,True),(0.1,1,1,1,10,32,True),(0.1,1,1,1,10,64,True),(0.2,1,1,1,10,64,True),(0.1,1,1,1,20,64,True),(0.1,1,0.5,1,10,64,True)]:
        k=(a,b,l1,l2,ep,bs,init)
        ws=ftrl(Htr,T.s.values,a,b,l1,l2,ep,bs,init=init); ww=ftrl(Htr,T.w.values,a,b,l1,l2,ep,bs,init=init)
        ps=1/(1+np.exp(-(Hte@ws))); pw=1/(1+np.exp(-(Hte@ww)))
        out[k]=apgr(ps-pw,s,w)[0]
        print(seed,k,round(out[k],3),'nnz',(ws!=0).sum(),flush=True)
    for kk,v in out.items(): res.setdefault(kk,[]).append(v)
for k,v in res.items(): print(k, round(np.mean(v),3))
