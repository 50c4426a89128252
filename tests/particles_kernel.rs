//! The particle kernel against an O(N²) reference written here from the documented model, plus
//! the physics checks (energy), determinism, replicas and validation.

use gridwatch::particles::{simulate, ParticleError, ParticleParams, Simulation};
use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// The documented model, checking every pair (i < j) in lexicographic order each step.
struct Reference {
    radius: f64,
    dt: f64,
    positions: Vec<[f64; 2]>,
    velocities: Vec<[f64; 2]>,
    collisions: u64,
    wall_bounces: u64,
}

impl Reference {
    /// Initial state as documented: Xoshiro256++ seeded from the u64 seed, four draws
    /// `(next_u64 >> 11) / 2⁵³` per disc for x, y, vx, vy.
    fn new(params: &ParticleParams) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(params.seed);
        let mut draw = || (rng.next_u64() >> 11) as f64 / 9007199254740992.0;
        let mut positions = Vec::new();
        let mut velocities = Vec::new();
        for _ in 0..params.particles {
            let x = params.radius + (1.0 - 2.0 * params.radius) * draw();
            let y = params.radius + (1.0 - 2.0 * params.radius) * draw();
            let vx = params.max_speed * (2.0 * draw() - 1.0);
            let vy = params.max_speed * (2.0 * draw() - 1.0);
            positions.push([x, y]);
            velocities.push([vx, vy]);
        }
        Self {
            radius: params.radius,
            dt: params.dt,
            positions,
            velocities,
            collisions: 0,
            wall_bounces: 0,
        }
    }

    fn step(&mut self) {
        let (low, high) = (self.radius, 1.0 - self.radius);
        for (p, v) in self.positions.iter_mut().zip(&mut self.velocities) {
            for axis in 0..2 {
                p[axis] += v[axis] * self.dt;
            }
            for axis in 0..2 {
                if p[axis] < low {
                    p[axis] = 2.0 * low - p[axis];
                } else if p[axis] > high {
                    p[axis] = 2.0 * high - p[axis];
                } else {
                    continue;
                }
                v[axis] = -v[axis];
                self.wall_bounces += 1;
                p[axis] = p[axis].clamp(low, high);
            }
        }
        let contact = 2.0 * self.radius;
        let n = self.positions.len();
        for i in 0..n {
            for j in i + 1..n {
                let dx = self.positions[j][0] - self.positions[i][0];
                let dy = self.positions[j][1] - self.positions[i][1];
                let distance_squared = dx * dx + dy * dy;
                if distance_squared >= contact * contact {
                    continue;
                }
                let [vix, viy] = self.velocities[i];
                let [vjx, vjy] = self.velocities[j];
                let approach = (vjx - vix) * dx + (vjy - viy) * dy;
                if approach < 0.0 {
                    let k = approach / distance_squared;
                    self.velocities[i] = [vix + k * dx, viy + k * dy];
                    self.velocities[j] = [vjx - k * dx, vjy - k * dy];
                    self.collisions += 1;
                }
            }
        }
    }
}

fn with_radius(particles: u32, steps: u64, seed: u64, radius: f64) -> ParticleParams {
    ParticleParams {
        radius,
        dt: 0.5 * radius,
        ..ParticleParams::new(particles, steps, seed)
    }
}

#[test]
fn initial_state_follows_the_documented_generator() {
    for seed in [0, 1, 123, u64::MAX] {
        let params = ParticleParams::new(50, 1, seed);
        let simulation = Simulation::new(&params).unwrap();
        let reference = Reference::new(&params);
        assert_eq!(simulation.positions(), reference.positions.as_slice());
        assert_eq!(simulation.velocities(), reference.velocities.as_slice());
    }
}

#[test]
fn cell_grid_finds_the_same_collisions_as_checking_every_pair() {
    let mut total_collisions = 0;
    for (case, &(particles, radius)) in [
        (1, 0.05),
        (2, 0.2),
        (7, 0.1),
        (40, 0.04),
        (200, 0.02),
        (300, 0.02),
        (500, 0.004),
    ]
    .iter()
    .enumerate()
    {
        for seed in [case as u64, 1000 + case as u64 * 7919] {
            let params = with_radius(particles, 150, seed, radius);
            let mut simulation = Simulation::new(&params).unwrap();
            let mut reference = Reference::new(&params);
            for step in 0..params.steps {
                simulation.step();
                reference.step();
                let label = format!("N={particles} seed={seed} step={step}");
                assert_eq!(simulation.collisions(), reference.collisions, "{label}");
                assert_eq!(simulation.wall_bounces(), reference.wall_bounces, "{label}");
            }
            assert_eq!(simulation.positions(), reference.positions.as_slice());
            assert_eq!(simulation.velocities(), reference.velocities.as_slice());
            total_collisions += reference.collisions;
        }
    }
    assert!(total_collisions > 1000, "the cases must collide often");
}

#[test]
fn default_parameters_match_checking_every_pair() {
    let params = ParticleParams::new(400, 400, 77);
    let outcome = simulate(&params).unwrap();
    let mut reference = Reference::new(&params);
    for _ in 0..params.steps {
        reference.step();
    }
    assert_eq!(outcome.collisions, reference.collisions);
    assert_eq!(outcome.wall_bounces, reference.wall_bounces);
    assert!(outcome.collisions > 50);
}

#[test]
fn kinetic_energy_is_conserved_over_many_steps() {
    for params in [
        ParticleParams::new(500, 20_000, 5),
        with_radius(2_000, 2_000, 6, 0.008),
    ] {
        let outcome = simulate(&params).unwrap();
        let reference = Reference::new(&params);
        let start: f64 = reference
            .velocities
            .iter()
            .map(|[vx, vy]| 0.5 * (vx * vx + vy * vy))
            .sum();
        assert!((outcome.kinetic_energy_start - start).abs() <= 1e-12 * start);
        let drift = (outcome.kinetic_energy_end - start).abs() / start;
        assert!(drift <= 1e-9, "relative drift {drift}");
        assert!(
            outcome.collisions > 10_000,
            "{} collisions",
            outcome.collisions
        );
        assert!(outcome.wall_bounces > 1_000);
    }
}

#[test]
fn one_disc_bounces_between_walls_as_counted_by_hand() {
    // Dyadic numbers keep every step exact. The walls are at 0.125 and 0.875; moving 0.0625 a
    // step from 0.5, the disc passes 0.875 on step 7 (0.9375 → mirrored to 0.8125), then 0.125 on
    // step 19 (0.0625 → mirrored to 0.1875).
    let params = ParticleParams {
        radius: 0.125,
        dt: 0.0625,
        ..ParticleParams::new(1, 19, 0)
    };
    let mut simulation =
        Simulation::with_state(&params, vec![[0.5, 0.5]], vec![[1.0, 0.0]]).unwrap();
    simulation.run(6);
    assert_eq!(simulation.wall_bounces(), 0);
    simulation.step();
    assert_eq!(simulation.wall_bounces(), 1);
    assert_eq!(simulation.positions(), &[[0.8125, 0.5]]);
    assert_eq!(simulation.velocities(), &[[-1.0, 0.0]]);
    simulation.run(12);
    assert_eq!(simulation.wall_bounces(), 2);
    assert_eq!(simulation.positions(), &[[0.1875, 0.5]]);
    assert_eq!(simulation.velocities(), &[[1.0, 0.0]]);
    assert_eq!(simulation.collisions(), 0);
    assert_eq!(simulation.steps_done(), 19);
}

#[test]
fn receding_overlapping_discs_do_not_collide() {
    let params = ParticleParams {
        radius: 0.125,
        dt: 0.0625,
        ..ParticleParams::new(2, 1, 0)
    };
    let positions = vec![[0.4375, 0.5], [0.5625, 0.5]];
    let velocities = vec![[-1.0, 0.0], [1.0, 0.0]];
    let mut simulation = Simulation::with_state(&params, positions, velocities).unwrap();
    simulation.step();
    assert_eq!(simulation.collisions(), 0);
    assert_eq!(simulation.velocities(), &[[-1.0, 0.0], [1.0, 0.0]]);
}

#[test]
fn the_same_parameters_give_the_same_result() {
    let params = ParticleParams::new(1_000, 300, 42);
    let first = simulate(&params).unwrap();
    let second = simulate(&params).unwrap();
    assert_eq!(first, second);
    assert_eq!(
        first.kinetic_energy_end.to_bits(),
        second.kinetic_energy_end.to_bits()
    );
}

#[test]
fn a_replica_sweep_gives_one_distinct_result_per_seed() {
    let (first_seed, replicas) = (1_000, 8);
    let outcomes: Vec<_> = (first_seed..first_seed + replicas)
        .map(|seed| simulate(&ParticleParams::new(200, 300, seed)).unwrap())
        .collect();
    for (a, left) in outcomes.iter().enumerate() {
        for right in &outcomes[a + 1..] {
            assert_ne!(left, right);
            assert_ne!(left.kinetic_energy_start, right.kinetic_energy_start);
        }
    }
}

#[test]
fn bad_parameters_get_errors_naming_the_field() {
    let base = ParticleParams::new(100, 100, 1);
    let cases = [
        (
            ParticleParams::new(0, 100, 1),
            "particles must be between 1 and 1000000, got 0",
        ),
        (
            ParticleParams::new(1_000_001, 100, 1),
            "particles must be between 1 and 1000000, got 1000001",
        ),
        (
            ParticleParams::new(100, 0, 1),
            "steps must be between 1 and 100000000, got 0",
        ),
        (
            ParticleParams::new(100, 100_000_001, 1),
            "steps must be between 1 and 100000000, got 100000001",
        ),
        (
            ParticleParams::new(1_000_000, 100_000, 1),
            "particles × steps = 100000000000 exceeds the limit of 20000000000 per task; \
             lower one of them",
        ),
        (
            ParticleParams {
                radius: f64::NAN,
                ..base
            },
            "radius must be a finite number greater than 0, got NaN",
        ),
        (
            ParticleParams { dt: -0.001, ..base },
            "dt must be a finite number greater than 0, got -0.001",
        ),
        (
            ParticleParams {
                max_speed: f64::INFINITY,
                ..base
            },
            "max_speed must be a finite number greater than 0, got inf",
        ),
        (
            ParticleParams {
                radius: 0.05,
                ..base
            },
            "radius 0.05 with 100 particles covers 0.785 of the box, more than 0.5; lower the \
             radius or the number of particles",
        ),
        (
            ParticleParams { dt: 1.0, ..base },
            "dt × max_speed = 1 exceeds the radius 0.017841241161527712; lower dt or max_speed",
        ),
    ];
    for (params, message) in cases {
        assert_eq!(params.validate().unwrap_err().to_string(), message);
        assert_eq!(simulate(&params).unwrap_err().to_string(), message);
    }
}

#[test]
fn an_explicit_state_must_fit_the_parameters() {
    let params = ParticleParams::new(2, 1, 0);
    let outside = Simulation::with_state(&params, vec![[0.5, 0.5], [1.0, 0.5]], vec![[0.0; 2]; 2]);
    assert!(matches!(outside, Err(ParticleError::BadState(_))));
    let short = Simulation::with_state(&params, vec![[0.5, 0.5]], vec![[0.0; 2]]);
    assert!(matches!(short, Err(ParticleError::BadState(_))));
    let nan = Simulation::with_state(
        &params,
        vec![[0.3, 0.3], [0.6, 0.6]],
        vec![[0.0, f64::NAN], [0.0; 2]],
    );
    assert!(matches!(nan, Err(ParticleError::BadState(_))));
}

#[test]
fn figures_match_the_independent_python_implementation() {
    // Printed by benches/python/particles.py, a separate implementation of the same model and
    // generator in another language: floats must agree to the last bit.
    let cases = [
        (
            (100, 500, 123),
            (934, 240, 33.19322985293332, 33.193229852933335),
        ),
        (
            (200, 800, 456),
            (2999, 572, 63.648549823474966, 63.64854982347496),
        ),
        (
            (1000, 300, 42),
            (5614, 480, 329.6073562171159, 329.60735621711683),
        ),
    ];
    for ((particles, steps, seed), (collisions, wall_bounces, start, end)) in cases {
        let outcome = simulate(&ParticleParams::new(particles, steps, seed)).unwrap();
        assert_eq!(outcome.collisions, collisions, "seed {seed}");
        assert_eq!(outcome.wall_bounces, wall_bounces, "seed {seed}");
        assert_eq!(outcome.kinetic_energy_start, start, "seed {seed}");
        assert_eq!(outcome.kinetic_energy_end, end, "seed {seed}");
    }
}
