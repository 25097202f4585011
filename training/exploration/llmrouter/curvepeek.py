from lib import *
c = Ctx()
for w in (0,1):
    P = np.load(f"P_base_{w}.npy"); b,bs,bc = c.best(c.Yte,c.Cte)
    pts = curve(P, c.Yte, c.Cte, c.price, bc)
    o = np.argsort(pts[:,0]); p = pts[o]
    sel = (p[:,0]>0.85)&(p[:,0]<1.2)
    print(w, np.unique(np.round(p[sel],4),axis=0).tolist())
    print("max score overall", p[:,1].max(), "0.95 target", .95*bs)
    sel = (p[:,0]>0.1)&(p[:,0]<0.17); print(np.unique(np.round(p[sel],4),axis=0).tolist())
