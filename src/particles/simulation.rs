//! The state of one simulation and its step: move, reflect at the walls, collide.

use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::grid::CellGrid;
use super::{ParticleError, ParticleParams};

/// 2⁻⁵³: turns the top 53 bits of a `u64` into a double in [0, 1) exactly.
const UNIT: f64 = 1.0 / (1u64 << 53) as f64;

/// N discs in the unit box, stepped one `dt` at a time.
#[derive(Clone, Debug)]
pub struct Simulation {
    params: ParticleParams,
    positions: Vec<[f64; 2]>,
    velocities: Vec<[f64; 2]>,
    collisions: u64,
    wall_bounces: u64,
    steps_done: u64,
    grid: CellGrid,
    /// Touching pairs of the current step, kept to reuse its allocation.
    pairs: Vec<(u32, u32)>,
}

impl Simulation {
    /// Validates `params` and draws the initial state from `params.seed`.
    ///
    /// The generator is `Xoshiro256PlusPlus::seed_from_u64(seed)` of the `rand_xoshiro` crate
    /// (its four state words are the first four outputs of SplitMix64 started at `seed`). Each
    /// draw u = (next_u64 >> 11) × 2⁻⁵³ is uniform in [0, 1). For disc 0, 1, …, N − 1 in turn,
    /// four draws give x, y = radius + (1 − 2·radius)·u (inside the walls; discs may overlap at
    /// first, and separate or collide on the first steps) and vx, vy = max_speed·(2u − 1).
    pub fn new(params: &ParticleParams) -> Result<Self, ParticleError> {
        params.validate()?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(params.seed);
        let mut draw = || (rng.next_u64() >> 11) as f64 * UNIT;
        let span = 1.0 - 2.0 * params.radius;
        let count = params.particles as usize;
        let mut positions = Vec::with_capacity(count);
        let mut velocities = Vec::with_capacity(count);
        for _ in 0..count {
            let x = params.radius + span * draw();
            let y = params.radius + span * draw();
            let vx = params.max_speed * (2.0 * draw() - 1.0);
            let vy = params.max_speed * (2.0 * draw() - 1.0);
            positions.push([x, y]);
            velocities.push([vx, vy]);
        }
        Ok(Self::from_parts(*params, positions, velocities))
    }

    /// A simulation from an explicit state (one position and velocity per disc), for hand-made
    /// scenarios. Positions must lie within the walls and every number must be finite.
    pub fn with_state(
        params: &ParticleParams,
        positions: Vec<[f64; 2]>,
        velocities: Vec<[f64; 2]>,
    ) -> Result<Self, ParticleError> {
        params.validate()?;
        let count = params.particles as usize;
        if positions.len() != count || velocities.len() != count {
            return Err(ParticleError::BadState(format!(
                "{} positions and {} velocities for {count} particles",
                positions.len(),
                velocities.len()
            )));
        }
        let (low, high) = (params.radius, 1.0 - params.radius);
        for (disc, (position, velocity)) in positions.iter().zip(&velocities).enumerate() {
            if !position.iter().all(|p| (low..=high).contains(p)) {
                return Err(ParticleError::BadState(format!(
                    "disc {disc} at {position:?} is not within the walls [{low}, {high}]"
                )));
            }
            if !velocity.iter().all(|v| v.is_finite()) {
                return Err(ParticleError::BadState(format!(
                    "disc {disc} has velocity {velocity:?}"
                )));
            }
        }
        Ok(Self::from_parts(*params, positions, velocities))
    }

    fn from_parts(
        params: ParticleParams,
        positions: Vec<[f64; 2]>,
        velocities: Vec<[f64; 2]>,
    ) -> Self {
        Self {
            grid: CellGrid::new(positions.len(), params.radius),
            params,
            positions,
            velocities,
            collisions: 0,
            wall_bounces: 0,
            steps_done: 0,
            pairs: Vec::new(),
        }
    }

    /// Advances `steps` steps (callers slice a long run to report progress between slices).
    pub fn run(&mut self, steps: u64) {
        for _ in 0..steps {
            self.step();
        }
    }

    /// Advances one step: move, walls, collisions (see the module doc for the rules).
    pub fn step(&mut self) {
        let dt = self.params.dt;
        for (position, velocity) in self.positions.iter_mut().zip(&self.velocities) {
            position[0] += velocity[0] * dt;
            position[1] += velocity[1] * dt;
        }
        self.reflect_at_walls();
        self.collide();
        self.steps_done += 1;
    }

    /// Mirrors every disc that crossed a wall back inside and flips that velocity component.
    fn reflect_at_walls(&mut self) {
        let (low, high) = (self.params.radius, 1.0 - self.params.radius);
        for (position, velocity) in self.positions.iter_mut().zip(&mut self.velocities) {
            for axis in 0..2 {
                let p = position[axis];
                if p < low {
                    position[axis] = 2.0 * low - p;
                } else if p > high {
                    position[axis] = 2.0 * high - p;
                } else {
                    continue;
                }
                velocity[axis] = -velocity[axis];
                self.wall_bounces += 1;
                // Only a disc moving more than the box in one step could still be outside;
                // keeping it inside keeps the next step's reflection well defined.
                position[axis] = position[axis].max(low).min(high);
            }
        }
    }

    /// Resolves the touching pairs in (i, j) order; each that is still approaching collides.
    fn collide(&mut self) {
        let contact = 2.0 * self.params.radius;
        let mut pairs = std::mem::take(&mut self.pairs);
        self.grid
            .touching_pairs(&self.positions, contact * contact, &mut pairs);
        for &(i, j) in &pairs {
            let (i, j) = (i as usize, j as usize);
            let [xi, yi] = self.positions[i];
            let [xj, yj] = self.positions[j];
            let (dx, dy) = (xj - xi, yj - yi);
            let [vix, viy] = self.velocities[i];
            let [vjx, vjy] = self.velocities[j];
            let approach = (vjx - vix) * dx + (vjy - viy) * dy;
            if approach < 0.0 {
                // Equal masses: the discs swap their velocity components along the line of
                // centres; k·d is that component's difference.
                let k = approach / (dx * dx + dy * dy);
                self.velocities[i] = [vix + k * dx, viy + k * dy];
                self.velocities[j] = [vjx - k * dx, vjy - k * dy];
                self.collisions += 1;
            }
        }
        self.pairs = pairs;
    }

    /// The parameters this simulation was built from.
    pub fn params(&self) -> &ParticleParams {
        &self.params
    }

    /// Centre of each disc.
    pub fn positions(&self) -> &[[f64; 2]] {
        &self.positions
    }

    /// Velocity of each disc.
    pub fn velocities(&self) -> &[[f64; 2]] {
        &self.velocities
    }

    /// Disc–disc collisions so far.
    pub fn collisions(&self) -> u64 {
        self.collisions
    }

    /// Disc–wall bounces so far.
    pub fn wall_bounces(&self) -> u64 {
        self.wall_bounces
    }

    /// Steps taken so far.
    pub fn steps_done(&self) -> u64 {
        self.steps_done
    }

    /// Total kinetic energy with unit masses: ½ Σ (vx² + vy²), summed in disc order.
    pub fn kinetic_energy(&self) -> f64 {
        let twice: f64 = self
            .velocities
            .iter()
            .map(|[vx, vy]| vx * vx + vy * vy)
            .sum();
        0.5 * twice
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_on_discs_swap_velocities_once() {
        let mut params = ParticleParams::new(2, 10, 0);
        // Dyadic numbers, so every step is exact: the discs touch on step 3 (gap 0.125 < 0.25).
        params.radius = 0.125;
        params.dt = 0.0625;
        let positions = vec![[0.25, 0.5], [0.75, 0.5]];
        let velocities = vec![[1.0, 0.0], [-1.0, 0.0]];
        let mut simulation = Simulation::with_state(&params, positions, velocities).unwrap();
        simulation.run(5);
        assert_eq!(simulation.collisions(), 1);
        assert_eq!(simulation.velocities(), &[[-1.0, 0.0], [1.0, 0.0]]);
        assert_eq!(simulation.wall_bounces(), 0);
    }
}
