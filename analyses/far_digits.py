"""Do a coupled model's answers depend on operand digits far from the place being answered?
(issue 24; docs/length_generalisation.md, "What the references have ...", point 4)

    python analyses/far_digits.py /work/runs/24b/coupling_s4 [--n 300] [--width 20]

On operands of ``--width`` digits (the model read at that width): exact match when every digit is
random; when only a 4-digit window at places k..k+3 is random and the rest are zero; and when the
window is random and every other place holds a small digit (a's 1-4, b's 0-4: no place outside the
window carries into it, so the window's answer digits are the same function of the window as with
zeros). A model that passes over far digits by their *value* (zeros) rather than their position ID
loses exact match in the last case. Prints one JSON object; seeded (``random.Random(--seed)``).
"""

from __future__ import annotations

import argparse
import json
import random

from mechinterp_arith import load
from mechinterp_arith.core.threads import set_threads


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--n", type=int, default=300, help="pairs per set (default 300)")
    p.add_argument("--width", type=int, default=20, help="operand digits (default 20)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    set_threads(1)
    ckpt = load(args.checkpoint, device="cpu").widened(args.width)
    rng = random.Random(args.seed)
    W = args.width

    def digits(places, low=0, high=9) -> int:
        return sum(rng.randint(low, high) * 10**p for p in places)

    def exact(make) -> float:
        pairs = [make() for _ in range(args.n)]
        a, b = [x for x, _ in pairs], [y for _, y in pairs]
        return sum(int(c) == x + y for c, x, y in zip(ckpt.predict(a, b), a, b)) / args.n

    out: dict = {"checkpoint": args.checkpoint, "n": args.n, "width": W, "seed": args.seed}
    out["all_random"] = exact(lambda: (digits(range(W)), digits(range(W))))
    out["window_rest_zero"] = {
        k: exact(lambda k=k: (digits(range(k, k + 4)), digits(range(k, k + 4)))) for k in range(0, W - 3, 4)
    }

    def small_far(k: int) -> tuple[int, int]:
        window = range(k, k + 4)
        rest = [p for p in range(W) if p not in window]
        return digits(window) + digits(rest, 1, 4), digits(window) + digits(rest, 0, 4)

    out["window_rest_small"] = {k: exact(lambda k=k: small_far(k)) for k in (0, W // 2 - 2, W - 4)}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
