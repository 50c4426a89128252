#!/usr/bin/env python3
"""The classic Python HPC Julia benchmark, as gridwatch's Julia kernel computes it.

Prints one JSON object on stdout: variant, width and height (the real dimensions, which repeated
addition may make one more than asked), iterations, iterations_sum, seconds (of the calculation
alone, not of building the coordinates) and, with --counts, every pixel's count, top row first.

Variants: "python" is the benchmark's pure-Python loop (calculate_z_serial_purepython);
"numpy" is a vectorised form of the same loop that keeps each pixel's exact arithmetic (real and
imaginary parts as float64 arrays, CPython's complex product order, hypot for |z|), so both give
the same counts. "auto" picks numpy when it imports.

Published check: --width 1000 (300 iterations) gives iterations_sum 33219980.
"""

import argparse
import json
import math
import sys
import time

C_RE, C_IM = -0.62772, -0.42193
REGION = (-1.8, 1.8, -1.8, 1.8)


def axes(width, height, x1, x2, y1, y2):
    """Coordinates by repeated addition, exactly as the benchmark builds them."""
    x_step = float(x2 - x1) / float(width)
    y_step = float(y1 - y2) / float(height)
    xs, ys = [], []
    ycoord = y2
    while ycoord > y1:
        ys.append(ycoord)
        ycoord += y_step
    xcoord = x1
    while xcoord < x2:
        xs.append(xcoord)
        xcoord += x_step
    return xs, ys


def calculate_z_serial_purepython(maxiter, zs, cs):
    """The benchmark's loop, unchanged."""
    output = [0] * len(zs)
    for i in range(len(zs)):
        n = 0
        z = zs[i]
        c = cs[i]
        while abs(z) < 2 and n < maxiter:
            z = z * z + c
            n += 1
        output[i] = n
    return output


def run_python(xs, ys, maxiter, c):
    zs = [complex(x, y) for y in ys for x in xs]
    cs = [c] * len(zs)
    started = time.perf_counter()
    output = calculate_z_serial_purepython(maxiter, zs, cs)
    return output, time.perf_counter() - started


def run_numpy(np, xs, ys, maxiter, c):
    """Same counts as the pure loop: only pixels still inside are updated, each with the
    operations CPython's complex type performs, in the same order."""
    zr = np.tile(np.array(xs, dtype=np.float64), len(ys))
    zi = np.repeat(np.array(ys, dtype=np.float64), len(xs))
    started = time.perf_counter()
    counts = np.zeros(zr.size, dtype=np.int64)
    alive = np.arange(zr.size)
    for _ in range(maxiter):
        inside = np.hypot(zr, zi) < 2.0
        if not inside.all():
            alive, zr, zi = alive[inside], zr[inside], zi[inside]
        if alive.size == 0:
            break
        zr, zi = (zr * zr - zi * zi) + c.real, (zr * zi + zi * zr) + c.imag
        counts[alive] += 1
    seconds = time.perf_counter() - started
    return counts.tolist(), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--height", type=int, help="defaults to the width")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--c", default=f"{C_RE},{C_IM}", help="RE,IM (as --c=-0.6,-0.4 when it starts with a minus)")
    parser.add_argument("--region", default=",".join(map(str, REGION)), help="X1,X2,Y1,Y2 (as --region=-1.8,...)")
    parser.add_argument("--variant", choices=["auto", "python", "numpy"], default="python")
    parser.add_argument("--counts", action="store_true", help="include every pixel's count")
    args = parser.parse_args()

    height = args.height if args.height is not None else args.width
    c_re, c_im = (float(part) for part in args.c.split(","))
    x1, x2, y1, y2 = (float(part) for part in args.region.split(","))
    xs, ys = axes(args.width, height, x1, x2, y1, y2)
    c = complex(c_re, c_im)

    variant, np = args.variant, None
    if variant in ("auto", "numpy"):
        try:
            import numpy as np
            variant = "numpy"
        except ImportError:
            if variant == "numpy":
                print("numpy is not installed", file=sys.stderr)
                return 3
            variant = "python"
    if variant == "numpy":
        counts, seconds = run_numpy(np, xs, ys, args.iterations, c)
    else:
        counts, seconds = run_python(xs, ys, args.iterations, c)

    result = {
        "variant": variant,
        "width": len(xs),
        "height": len(ys),
        "iterations": args.iterations,
        "iterations_sum": sum(counts),
        "seconds": seconds,
    }
    if args.counts:
        result["counts"] = counts
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
