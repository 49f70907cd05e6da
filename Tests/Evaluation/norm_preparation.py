#!/usr/bin/env python3
"""Does appending the log-norm to the L2 direction keep what L2 normalisation throws away? For each layer: class
Gaussians (numpy, MLE covariance shrunk by lambda 0.01 towards (tr C / D) I plus a 1e-6 floor) on raw activations,
on their L2 directions, and on the L2 direction plus one coordinate, log ||x||, scaled to the directions' mean
spread; the surprise's AUROC against every OOD set and their mean (Docs/Evaluation.md, finding 8).

    python3 Tests/Evaluation/norm_preparation.py --data DATA image:conv3_gap text:emb_l3 digits:h2 ...
"""
import argparse
import glob
import os
import sys

import numpy as np
from scipy.special import logsumexp
from sklearn.metrics import roc_auc_score
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = ''


def load(scen, layer):
    if scen=='digits':
        D=os.path.join(ROOT, 'Samples', 'Data', 'digits-mlp'); L=lambda n: np.load(f'{D}/{n}.npy').astype(np.float64)
        ood={s:L(f'ood_{s}_{layer}') for s in ('digits','inverted','noise')}
        return L(f'train_{layer}'),L(f'test_{layer}'),L('train_labels').astype(int),ood
    D=os.path.join(DATA, scen); L=lambda n: np.load(f'{D}/{n}.npy').astype(np.float64)
    sets=[os.path.basename(p)[len(layer)+5:-4] for p in glob.glob(f'{D}/{layer}_ood_*.npy')]
    return L(f'{layer}_train'),L(f'{layer}_test'),np.load(f'{D}/labels_train.npy'),{s:L(f'{layer}_ood_{s}') for s in sets}
def gda(tr,y,lam=0.01):
    d=tr.shape[1]; comps=[]
    for c in np.unique(y):
        xc=tr[y==c]; mu=xc.mean(0); S=np.cov(xc.T,bias=True); t=np.trace(S)/d
        S=(1-lam)*S+lam*t*np.eye(d)+1e-6*t*np.eye(d)
        L=np.linalg.cholesky(S); comps.append((mu,L,2*np.log(np.diag(L)).sum(),np.log(len(xc)/len(tr))))
    def score(x):
        out=[]
        for mu,L,ld,lp in comps:
            z=np.linalg.solve(L,(x-mu).T); out.append(lp-0.5*((z*z).sum(0)+ld))
        return -logsumexp(np.stack(out,1),1)
    return score
def prep(kind,x,scale=None):
    n=np.maximum(np.linalg.norm(x,axis=1,keepdims=True),1e-12)
    if kind=='raw': return x
    if kind=='l2': return x/n
    if kind=='l2+lognorm': return np.hstack([x/n, scale*np.log(n)])
ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--data", default="", help="directory holding image/ and text/")
ap.add_argument("layers", nargs="+", help="scenario:layer, scenario one of image, text, digits")
args = ap.parse_args()
DATA = args.data
for arg in args.layers:
    scen,layer=arg.split(':')
    tr,te,y,ood=load(scen,layer)
    d=tr.shape[1]; res={}; per={}
    lnorm=np.log(np.maximum(np.linalg.norm(tr,axis=1),1e-12))
    # scale: the log-norm's spread made equal to the mean spread of the unit vectors' coordinates
    u=tr/np.maximum(np.linalg.norm(tr,axis=1,keepdims=True),1e-12)
    scale=np.sqrt(u.var(0).mean())/max(lnorm.std(),1e-12)
    for kind in ['raw','l2','l2+lognorm']:
        f=gda(prep(kind,tr,scale),y); s0=f(prep(kind,te,scale))
        per[kind]={k: roc_auc_score(np.r_[np.zeros(len(s0)),np.ones(len(v))],np.r_[s0,f(prep(kind,v,scale))]) for k, v in ood.items()}
        res[kind]=np.mean(list(per[kind].values()))
    best=max(res['raw'],res['l2'])
    print(f"{scen:6} {layer:12} raw {res['raw']:.4f} l2 {res['l2']:.4f} l2+lognorm {res['l2+lognorm']:.4f}  (vs better of raw/l2: {res['l2+lognorm']-best:+.4f}; l2 vs better: {res['l2']-best:+.4f})")
    for k in ood:
        print(f"    {k:16} raw {per['raw'][k]:.4f} l2 {per['l2'][k]:.4f} l2+lognorm {per['l2+lognorm'][k]:.4f}")
