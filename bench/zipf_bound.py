#!/usr/bin/env python3
"""What hit ratio the Zipf scenario of bench/compare/ allows a cache of a given size.

Two bounds for a cache holding `entries` of `keys` equally sized objects under Zipf(s):

- static: a cache that knows the popularity and holds the `entries` most popular keys,
  H(entries, s) / H(keys, s). The figure the scenario is compared with.
- online: policies that learn popularity from the requests seen so far, replayed on a trace as
  long as the harness's (warm-up, then the measured window, counted alone), among them an
  exact LFU with unbounded counters, the best a frequency policy can learn from that trace.

    python3 bench/zipf_bound.py --entries 14039 --warmup 120000 --measured 250000
"""
import argparse
import bisect
import collections
import heapq
import random


def harmonic(n, s):
    return sum(1 / i**s for i in range(1, n + 1))


def trace(keys, s, n, seed):
    cdf, total = [], 0.0
    for i in range(1, keys + 1):
        total += 1 / i**s
        cdf.append(total)
    rng = random.Random(seed)
    return [bisect.bisect_left(cdf, rng.random() * total) for _ in range(n)]


def lru(entries, admit=None):
    held, seen = collections.OrderedDict(), collections.Counter()

    def request(k):
        seen[k] += 1
        if k in held:
            held.move_to_end(k)
            return True
        if len(held) >= entries:
            if admit and not admit(seen, k, next(iter(held))):
                return False
            held.popitem(last=False)
        held[k] = True
        return False

    return request


def lfu(entries):
    seen, held, heap = collections.Counter(), set(), []

    def request(k):
        seen[k] += 1
        if k in held:
            heapq.heappush(heap, (seen[k], k))
            return True
        if len(held) >= entries:
            while heap[0][1] not in held or heap[0][0] != seen[heap[0][1]]:
                heapq.heappop(heap)
            if seen[k] <= heap[0][0]:
                return False
            held.discard(heapq.heappop(heap)[1])
        held.add(k)
        heapq.heappush(heap, (seen[k], k))
        return False

    return request


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--s", type=float, default=1.0)
    ap.add_argument("--entries", type=int, required=True, help="objects the cache holds")
    ap.add_argument("--warmup", type=int, default=120_000, help="requests before the window")
    ap.add_argument("--measured", type=int, default=250_000, help="requests in the window")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    print(f"static bound H({a.entries})/H({a.keys}): "
          f"{harmonic(a.entries, a.s) / harmonic(a.keys, a.s):.3f}")
    reqs = trace(a.keys, a.s, a.warmup + a.measured, a.seed)
    policies = {
        "LRU": lru(a.entries),
        "LRU + doorkeeper (2nd request)": lru(a.entries, lambda c, k, _: c[k] >= 2),
        "LRU + TinyLFU (exact counts)": lru(a.entries, lambda c, k, v: c[k] > c[v]),
        "exact LFU": lfu(a.entries),
    }
    for name, policy in policies.items():
        hits = sum(policy(k) and t >= a.warmup for t, k in enumerate(reqs))
        print(f"{name}: {hits / a.measured:.3f}")


if __name__ == "__main__":
    main()
