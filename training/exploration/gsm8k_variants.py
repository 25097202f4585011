import os, sys, re; sys.path.insert(0,os.path.dirname(os.path.abspath(__file__)))
from load import *
from sklearn.feature_extraction.text import TfidfVectorizer, HashingVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
df=load_gsm()
print(len(df))
res={}
def run(Xtr,Xte,T,s,w,C):
    ps=LogisticRegression(C=C,max_iter=3000).fit(Xtr,T.s).predict_proba(Xte)[:,1]
    pw=LogisticRegression(C=C,max_iter=3000).fit(Xtr,T.w).predict_proba(Xte)[:,1]
    return apgr(ps-pw,s,w)[0]
def meta(t):
    nums=re.findall(r'\d+\.?\d*',t)
    return [len(t)/500, len(nums)/10, len(set(nums))/10, t.count('%')/2, t.count('/')/2, t.count('.')/10, len(re.findall(r'\b(half|twice|each|every|per|times|total|remaining|left)\b',t))/5]
M=np.array([meta(t) for t in df.prompt])
from scipy.sparse import hstack, csr_matrix
for seed in range(8):
    tr,te=train_test_split(np.arange(len(df)),test_size=0.3,random_state=seed)
    T=df.iloc[tr]; E=df.iloc[te]
    s=E.s.values; w=E.w.values
    out={}
    for C in [0.1,0.3,1,3]:
        v=TfidfVectorizer(ngram_range=(1,2),min_df=2,sublinear_tf=True)
        out[f'word C{C}']=run(v.fit_transform(T.prompt),v.transform(E.prompt),T,s,w,C)
    h=HashingVectorizer(ngram_range=(1,2),n_features=2**16,alternate_sign=False,norm=None); t=TfidfTransformer(sublinear_tf=True)
    Htr=t.fit_transform(h.transform(T.prompt)); Hte=t.transform(h.transform(E.prompt))
    out['hash16 C1']=run(Htr,Hte,T,s,w,1)
    for sc in [1,3]:
        out[f'hash+meta{sc}']=run(hstack([Htr,sc*csr_matrix(M[tr])]).tocsr(),hstack([Hte,sc*csr_matrix(M[te])]).tocsr(),T,s,w,1)
    out['meta only']=run(M[tr],M[te],T,s,w,1)
    out['len']=apgr(M[te,0]+1e-9*np.random.rand(len(E)),s,w)[0]
    out['nnums']=apgr(M[te,1]+M[te,0]*0.01,s,w)[0]
    for k,v in out.items(): res.setdefault(k,[]).append(v)
for k,v in res.items(): print(k, round(np.mean(v),3), np.round(v,3))
