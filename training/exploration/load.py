import pandas as pd, numpy as np, glob, json, os
D=os.path.join(os.path.dirname(os.path.abspath(__file__)), '../../../shared/datasets/routellm')
def load_mmlu():
    cont=set(json.loads(l)['eval_prompt'] for l in open(f'{D}/mmlu/contaminated_prompts.jsonl'))
    rows=[]
    for f in sorted(glob.glob(f'{D}/mmlu/mmlu_*.csv')):
        subj=os.path.basename(f)[5:-4]
        df=pd.read_csv(f)
        df['subject']=subj
        rows.append(df)
    df=pd.concat(rows,ignore_index=True)
    df=df[~df.prompt.isin(cont)].reset_index(drop=True)
    df['w']=df['mistralai/Mixtral-8x7B-Instruct-v0.1'].astype(float)
    df['s']=df['gpt-4-1106-preview'].astype(float)
    return df
def load_gsm():
    cont=set(json.loads(l)['eval_prompt'] for l in open(f'{D}/gsm8k/contaminated_prompts.jsonl'))
    df=pd.read_csv(f'{D}/gsm8k/gsm8k_responses.csv')
    df=df[~df.prompt.isin(cont)].reset_index(drop=True)
    df['w']=df['mistralai/Mixtral-8x7B-Instruct-v0.1'].astype(float)
    df['s']=df['gpt-4-1106-preview'].astype(float)
    df['subject']='gsm8k'
    return df
def apgr(score,s,w):
    n=len(score); aw=w.mean(); as_=s.mean(); span=as_-aw
    order=np.argsort(-score,kind='stable')
    sc=score[order]; d=(s-w)[order]
    c=[0.0]; p=[0.0]; acc=aw; i=0
    while i<n:
        j=i; delta=0
        while j<n and sc[j]==sc[i]:
            delta+=d[j]; j+=1
        acc+=delta/n; c.append(j/n); p.append((acc-aw)/span); i=j
    c=np.array(c); p=np.array(p)
    a=((c[1:]-c[:-1])*(p[1:]+p[:-1])/2).sum()
    # cpt50
    k=np.argmax(p>=0.5)
    return a, c, p
def cpt(c,p,x):
    for k in range(1,len(c)):
        if p[k]>=x:
            p0,p1=p[k-1],p[k]
            t=(x-p0)/(p1-p0) if p1>p0 else 1
            return c[k-1]+t*(c[k]-c[k-1])
