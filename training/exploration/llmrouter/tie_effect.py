"""Effect of tie-breaking among equal-priced models (5 at $0.2, 3 at $0.9) on cached test preds."""
from lib import *
import json
c = Ctx()
rows = {json.dumps(json.loads(r.split("\t")[1]), sort_keys=True): r.split("\t")[0] for r in open("results.tsv")}
for cfg in ['{"C": 1, "task": "pertask"}', '{"C": 1, "keep": null, "task": "pertask"}', '{"learner": "ftrl", "task": "stage2"}', '{"C": 3, "task": "none"}', '{"task": "prior"}']:
    P = np.load(f"preds/{rows[json.dumps(json.loads(cfg), sort_keys=True)]}_test.npy")
    print(cfg, "tie=prob", ["%.4f" % x for x in c.evaluate(P, tie="prob")], "tie=list-order", ["%.4f" % x for x in c.evaluate(P, tie="order")])
for w in (0, 1):
    P = np.load(f"P_base_{w}.npy"); print("sklearn baseline task=%d" % w, "prob", ["%.4f" % x for x in c.evaluate(P)], "order", ["%.4f" % x for x in c.evaluate(P, tie="order")])
print("oracle mean score", c.Yte.max(1).mean())
