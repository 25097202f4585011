import os, sys, re; sys.path.insert(0,os.path.dirname(os.path.abspath(__file__)))
from load import *
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.model_selection import train_test_split
from scipy.sparse import hstack, csr_matrix
df=load_mmlu()
def ftrl(X,y,alpha,beta,l1,l2,epochs,bs,seed=0):
    d=X.shape[1]; z=np.zeros(d); n=np.zeros(d)
    rng=np.random.RandomState(seed)
    for ep in range(epochs):
        perm=rng.permutation(X.shape[0])
        for k in range(0,len(perm),bs):
            ii=perm[k:k+bs]; Xb=X[ii]
            wts=np.where(np.abs(z)<=l1,0,(np.sign(z)*l1-z)/((np.sqrt(n)+beta)/alpha+l2))
            p=1/(1+np.exp(-np.clip(Xb@wts,-35,35)))
            g=Xb.T@(p-y[ii])
            sig=(np.sqrt(n+g*g)-np.sqrt(n))/alpha
            z+=g-sig*wts; n+=g*g
    return np.where(np.abs(z)<=l1,0,(np.sign(z)*l1-z)/((np.sqrt(n)+beta)/alpha+l2))
res={}
for seed in [0,1]:
    tr,te=train_test_split(np.arange(len(df)),test_size=0.3,random_state=seed)
    T=df.iloc[tr]; E=df.iloc[te]
    s=E.s.values; w=E.w.values
    h=HashingVectorizer(ngram_range=(1,2),n_features=2**16,alternate_sign=False,norm=None)
    t=TfidfTransformer(sublinear_tf=True)
    Htr=t.fit_transform(h.transform(T.prompt)); Hte=t.transform(h.transform(E.prompt))
    Htr=hstack([Htr,np.ones((Htr.shape[0],1))]).tocsr(); Hte=hstack([Hte,np.ones((Hte.shape[0],1))]).tocsr()
    out={}
    for (a,b,l1,l2,ep,bs) in [(0.1,1,0,3,10,32),(0.3,1,0,3,10,32),(0.1,1,0,3,20,32),(0.1,1,0.1,3,10,32),(0.05,1,0,3,20,16),(0.1,1,0,1,10,32),(0.2,1,0,3,5,64)]:
        ws=ftrl(Htr,T.s.values,a,b,l1,l2,ep,bs); ww=ftrl(Htr,T.w.values,a,b,l1,l2,ep,bs)
        ps=1/(1+np.exp(-(Hte@ws))); pw=1/(1+np.exp(-(Hte@ww)))
        out[(a,b,l1,l2,ep,bs)]=apgr(ps-pw,s,w)[0]
        print(seed,(a,b,l1,l2,ep,bs),round(out[(a,b,l1,l2,ep,bs)],3),'nnz',(ws!=0).sum(),flush=True)
    for k,v in out.items(): res.setdefault(k,[]).append(v)
for k,v in res.items(): print(k, round(np.mean(v),3))
