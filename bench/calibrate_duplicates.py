"""Duplicate thresholds against the labelled pairs of data/cases/haikou12345_env_dev.csv (read at run time).

Prints, for labelled duplicate pairs and for all other pairs of the same pollution type, how many pass the
duplicate rule of triage.queue.duplicates, and the other pairs that pass (to read: unlabelled repeats or
false alarms). Usage: python bench/calibrate_duplicates.py [CSV]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, bench/ comes first on sys.path, and bench/triage.py would shadow the triage package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import csv
import sys
from collections import defaultdict
from pathlib import Path

from triage.queue import duplicates as d

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "cases" / "haikou12345_env_dev.csv"


def main(path: Path) -> None:
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    ids = {r["order_id"]: i for i, r in enumerate(rows)}
    pairs = {(ids[r["duplicate_of"]], i) for i, r in enumerate(rows) if r["duplicate_of"] in ids}
    pairs = {(min(a, b), max(a, b)) for a, b in pairs}
    # Transitive closure within a group: all orders repeating one another.
    group = {}
    for a, b in sorted(pairs):
        g = group.get(a, a)
        group[a] = g
        group[b] = g
    labelled = set()
    members = defaultdict(list)
    for i, g in group.items():
        members[g].append(i)
    for ms in members.values():
        for x in ms:
            for y in ms:
                if x < y:
                    labelled.add((x, y))
    by_type = defaultdict(list)
    for i, r in enumerate(rows):
        by_type[r["pollution_type"]].append(i)
    tp = fn = fp = tn = 0
    lab_scores, false_alarms = [], []
    for ty, idx in by_type.items():
        for a_i, a in enumerate(idx):
            for b in idx[a_i + 1:]:
                ta, tb = rows[a]["text"], rows[b]["text"]
                ts = d.text_similarity(ta, tb)
                is_lab = (a, b) in labelled
                if ts < d.DUP_TEXT_MIN and not is_lab:
                    tn += 1
                    continue
                ps = d.place_similarity(None, ta, None, tb)
                hit = d.is_duplicate(ts, ps)
                if is_lab:
                    lab_scores.append((ts, ps))
                    tp += hit
                    fn += not hit
                else:
                    fp += hit
                    tn += not hit
                    if hit:
                        false_alarms.append((ts, ps, ta[:70], tb[:70]))
    print(f"labelled duplicate pairs: {len(labelled)}  found: {tp}  missed: {fn}")
    print(f"other same-type pairs flagged: {fp}  not flagged: {tn}")
    print("lowest labelled scores (text, place):", sorted(lab_scores, key=lambda x: (x[0], x[1] or -1))[:8])
    for ts, ps, a, b in sorted(false_alarms, key=lambda x: (x[0], x[1] or -1), reverse=True)[:60]:
        print(f"{ts:5.1f} {ps if ps is None else round(ps, 1)!s:>5} | {a} | {b}")

    # Relapse rule on pairs that are not labelled repeats: how many environmental pairs would count as
    # "same place, same problem" if one had been closed shortly before the other (the file has no dates).
    rel = []
    for ty, idx in by_type.items():
        if ty == "not_environmental":
            continue
        for a_i, a in enumerate(idx):
            for b in idx[a_i + 1:]:
                if (a, b) in labelled:
                    continue
                ra, rb = rows[a], rows[b]
                ps = d.place_similarity(None, ra["text"], None, rb["text"])
                if ps is None or ps < d.RELAPSE_PLACE_MIN:
                    continue
                ts = d.text_similarity(ra["text"], rb["text"])
                if d.is_relapse(ts, ps, same_problem=d.same_problem(ty, ra["subtype"], ty, rb["subtype"])):
                    rel.append((ps, ts, ra["text"][:60], rb["text"][:60]))
    n_env = sum(len(v) for k, v in by_type.items() if k != "not_environmental")
    print(f"\nrelapse-rule pairs among {n_env} environmental orders (unlabelled): {len(rel)}")
    rng = __import__("random").Random(0)
    for ps, ts, a, b in rng.sample(rel, min(30, len(rel))):
        print(f"{ps:5.1f} {ts:5.1f} | {a} | {b}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
