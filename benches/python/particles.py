#!/usr/bin/env python3
"""gridwatch's particle simulation in pure Python: the same model, generator and order of
operations as the Rust kernel, so both print the same numbers bit for bit.

Prints one JSON object on stdout: particles, steps, seed, radius, dt, max_speed, collisions,
wall_bounces, kinetic_energy_start, kinetic_energy_end, the same two energies as the integer bit
patterns of their IEEE doubles (*_bits: a reader's decimal parser cannot round them differently),
and seconds (of the stepping alone).

`--variant=numpy` steps with numpy arrays: moves, wall bounces and the search for touching pairs
run on whole arrays (element by element, so every value is the same double), and the pairs are
resolved one by one in sorted order, as in the pure loop. Both variants print the same numbers.

Model: N equal discs in the unit box. Initial state from Xoshiro256++ whose four state words
are the first four outputs of SplitMix64 started at the seed (rand_xoshiro's seed_from_u64);
per disc four draws u = (next >> 11) * 2**-53 give x, y = r + (1 - 2r) u and
vx, vy = max_speed (2u - 1). Each step: move by v dt; mirror discs past a wall and flip that
velocity component (one bounce each); list touching pairs (i < j, distance < 2r) with a cell
grid, sort them, and let each pair still approaching exchange its velocity components along the
line of centres (one collision each).
"""

import argparse
import json
import math
import struct
import sys
import time

MASK = (1 << 64) - 1
UNIT = 1.0 / (1 << 53)
AREA_FRACTION = 0.1
MAX_SPEED = 1.0
DT_RADII = 0.25
CELL_MARGIN = 1e-6


def splitmix64(state):
    """One SplitMix64 step: returns (new state, output)."""
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & MASK


class Xoshiro256PlusPlus:
    def __init__(self, seed):
        state, self.s = seed & MASK, []
        for _ in range(4):
            state, word = splitmix64(state)
            self.s.append(word)

    def next_u64(self):
        s = self.s
        result = (rotl((s[0] + s[3]) & MASK, 23) + s[0]) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def unit(self):
        return (self.next_u64() >> 11) * UNIT


def initial_state(n, seed, radius, max_speed):
    rng = Xoshiro256PlusPlus(seed)
    span = 1.0 - 2.0 * radius
    xs, ys, vxs, vys = [], [], [], []
    for _ in range(n):
        xs.append(radius + span * rng.unit())
        ys.append(radius + span * rng.unit())
        vxs.append(max_speed * (2.0 * rng.unit() - 1.0))
        vys.append(max_speed * (2.0 * rng.unit() - 1.0))
    return xs, ys, vxs, vys


def double_bits(value):
    """The IEEE 754 bit pattern of a float, as an unsigned integer."""
    return struct.unpack("<Q", struct.pack("<d", value))[0]


def kinetic_energy(vxs, vys):
    twice = 0.0
    for vx, vy in zip(vxs, vys):
        twice += vx * vx + vy * vy
    return 0.5 * twice


def figures(collisions, bounces, energy_start, energy_end, seconds):
    """What one run prints, the energies also as their exact bit patterns."""
    return {
        "collisions": collisions,
        "wall_bounces": bounces,
        "kinetic_energy_start": energy_start,
        "kinetic_energy_end": energy_end,
        "kinetic_energy_start_bits": double_bits(energy_start),
        "kinetic_energy_end_bits": double_bits(energy_end),
        "seconds": seconds,
    }


def cells_per_side(n, radius):
    by_size = 1.0 / (2.0 * radius * (1.0 + CELL_MARGIN))
    by_count = math.ceil(math.sqrt(n))
    return max(int(min(by_size, by_count)), 1)


def touching_pairs(xs, ys, contact_squared, side):
    """Every (i, j), i < j, closer than the diameter, found through the cell grid, sorted."""
    cells = {}
    for i in range(len(xs)):
        cx = min(int(xs[i] * side), side - 1)
        cy = min(int(ys[i] * side), side - 1)
        cells.setdefault((cx, cy), []).append(i)
    pairs = []
    for (cx, cy), here in cells.items():
        neighbours = [here]
        for nx, ny in ((1, -1), (1, 0), (1, 1), (0, 1)):
            other = cells.get((cx + nx, cy + ny))
            if other is not None:
                neighbours.append(other)
        for k, group in enumerate(neighbours):
            for a_pos, a in enumerate(here):
                for b in group[a_pos + 1:] if k == 0 else group:
                    i, j = (a, b) if a < b else (b, a)
                    dx, dy = xs[j] - xs[i], ys[j] - ys[i]
                    if dx * dx + dy * dy < contact_squared:
                        pairs.append((i, j))
    pairs.sort()
    return pairs


def simulate(n, steps, seed, radius, dt, max_speed):
    xs, ys, vxs, vys = initial_state(n, seed, radius, max_speed)
    energy_start = kinetic_energy(vxs, vys)
    low, high = radius, 1.0 - radius
    contact = 2.0 * radius
    contact_squared = contact * contact
    side = cells_per_side(n, radius)
    collisions = bounces = 0
    started = time.perf_counter()
    for _ in range(steps):
        for i in range(n):
            for pos, vel in ((xs, vxs), (ys, vys)):
                p = pos[i] + vel[i] * dt
                if p < low:
                    p = 2.0 * low - p
                elif p > high:
                    p = 2.0 * high - p
                else:
                    pos[i] = p
                    continue
                vel[i] = -vel[i]
                bounces += 1
                pos[i] = min(max(p, low), high)
        for i, j in touching_pairs(xs, ys, contact_squared, side):
            dx, dy = xs[j] - xs[i], ys[j] - ys[i]
            approach = (vxs[j] - vxs[i]) * dx + (vys[j] - vys[i]) * dy
            if approach < 0.0:
                k = approach / (dx * dx + dy * dy)
                vxs[i], vys[i] = vxs[i] + k * dx, vys[i] + k * dy
                vxs[j], vys[j] = vxs[j] - k * dx, vys[j] - k * dy
                collisions += 1
    seconds = time.perf_counter() - started
    energy_end = kinetic_energy(vxs, vys)
    return figures(collisions, bounces, energy_start, energy_end, seconds)


def touching_pairs_numpy(np, xs, ys, contact_squared, side):
    """`touching_pairs` on arrays: each disc against every disc of its own cell and of four
    neighbouring cells, found through the discs sorted by cell; (i, j) rows, sorted."""
    cx = np.minimum((xs * side).astype(np.int64), side - 1)
    cy = np.minimum((ys * side).astype(np.int64), side - 1)
    key = cx * side + cy
    order = np.argsort(key, kind="stable")
    sorted_keys = key[order]
    found = []
    for nx, ny, same in ((0, 0, True), (1, -1, False), (1, 0, False), (1, 1, False), (0, 1, False)):
        ox, oy = cx + nx, cy + ny
        inside = (ox >= 0) & (ox < side) & (oy >= 0) & (oy < side)
        a = np.nonzero(inside)[0]
        target = ox[a] * side + oy[a]
        start = np.searchsorted(sorted_keys, target, side="left")
        end = np.searchsorted(sorted_keys, target, side="right")
        counts = end - start
        a = np.repeat(a, counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        b = order[np.repeat(start, counts) + offsets]
        if same:
            keep = a < b
            a, b = a[keep], b[keep]
        i, j = np.minimum(a, b), np.maximum(a, b)
        dx, dy = xs[j] - xs[i], ys[j] - ys[i]
        close = dx * dx + dy * dy < contact_squared
        found.append(np.stack([i[close], j[close]], axis=1))
    pairs = np.concatenate(found) if found else np.empty((0, 2), dtype=np.int64)
    ranked = np.lexsort((pairs[:, 1], pairs[:, 0]))
    return pairs[ranked]


def simulate_numpy(n, steps, seed, radius, dt, max_speed):
    import numpy as np

    start = initial_state(n, seed, radius, max_speed)
    xs, ys, vxs, vys = (np.array(values, dtype=np.float64) for values in start)
    energy_start = kinetic_energy(vxs.tolist(), vys.tolist())
    low, high = radius, 1.0 - radius
    contact = 2.0 * radius
    contact_squared = contact * contact
    side = cells_per_side(n, radius)
    collisions = bounces = 0
    started = time.perf_counter()
    for _ in range(steps):
        for pos, vel in ((xs, vxs), (ys, vys)):
            p = pos + vel * dt
            below = p < low
            above = ~below & (p > high)
            bounced = below | above
            reflected = np.where(below, 2.0 * low - p, np.where(above, 2.0 * high - p, p))
            pos[:] = np.where(bounced, np.minimum(np.maximum(reflected, low), high), p)
            vel[bounced] = -vel[bounced]
            bounces += int(bounced.sum())
        for i, j in touching_pairs_numpy(np, xs, ys, contact_squared, side).tolist():
            dx, dy = float(xs[j]) - float(xs[i]), float(ys[j]) - float(ys[i])
            vxi, vyi, vxj, vyj = float(vxs[i]), float(vys[i]), float(vxs[j]), float(vys[j])
            approach = (vxj - vxi) * dx + (vyj - vyi) * dy
            if approach < 0.0:
                k = approach / (dx * dx + dy * dy)
                vxs[i], vys[i] = vxi + k * dx, vyi + k * dy
                vxs[j], vys[j] = vxj - k * dx, vyj - k * dy
                collisions += 1
    seconds = time.perf_counter() - started
    energy_end = kinetic_energy(vxs.tolist(), vys.tolist())
    return figures(collisions, bounces, energy_start, energy_end, seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=100)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--radius", type=float, help="default: discs cover 10%% of the box")
    parser.add_argument("--dt", type=float, help="default: radius / 4 / max_speed")
    parser.add_argument("--max-speed", type=float, default=MAX_SPEED)
    parser.add_argument("--variant", choices=["python", "numpy"], default="python")
    args = parser.parse_args()

    radius = args.radius
    if radius is None:
        radius = math.sqrt(AREA_FRACTION / (math.pi * float(args.particles)))
    dt = args.dt if args.dt is not None else DT_RADII * radius / args.max_speed
    result = {
        "particles": args.particles,
        "steps": args.steps,
        "seed": args.seed,
        "radius": radius,
        "dt": dt,
        "max_speed": args.max_speed,
    }
    if args.variant == "numpy":
        try:
            import numpy  # noqa: F401
        except ImportError:
            print("numpy is not installed", file=sys.stderr)
            return 3
        run = simulate_numpy
    else:
        run = simulate
    result.update(run(args.particles, args.steps, args.seed, radius, dt, args.max_speed))
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
