//! The particle-simulation kernel: N equal discs in the unit box, pure and deterministic, no I/O,
//! no networking, no async. Workers, `gridwatch particles` and the benchmarks call the same code.
//!
//! Invariant: the same [`ParticleParams`] give bit-identical results on any machine, because the
//! initial state comes from a documented generator and every step uses only IEEE-exact operations
//! (+, −, ×, ÷) in a fixed order. The cell grid finds the same collisions, resolved in the same
//! order, as a check of every pair would.
//!
//! The model, per step of a fixed `dt`:
//! 1. every disc moves by `velocity × dt`;
//! 2. a disc past a wall (centre closer than `radius` to it) is mirrored back inside and that
//!    velocity component flips: one wall bounce per wall crossed;
//! 3. the pairs (i < j) whose centres are closer than `2 × radius` are found with a uniform cell
//!    grid (O(N) per step), sorted, and resolved in that order: a pair still approaching (relative
//!    velocity against the line of centres) collides elastically with equal masses, exchanging the
//!    velocity components along that line, and counts as one collision.
//!
//! Walls and equal-mass collisions conserve kinetic energy exactly but for rounding, which stays
//! far below 10⁻⁹ relative over millions of collisions.

mod grid;
mod simulation;

pub use simulation::Simulation;

/// Fraction of the box the discs cover by default: dilute enough that overlaps stay local, dense
/// enough that a run of a few hundred steps sees many collisions.
pub const DEFAULT_AREA_FRACTION: f64 = 0.1;

/// Default bound of each initial velocity component: components are uniform in
/// `[−max_speed, max_speed)`.
pub const DEFAULT_MAX_SPEED: f64 = 1.0;

/// Default `dt` in radii per unit of `max_speed`: a disc at the initial top speed per component
/// moves a quarter of a radius along that axis per step, so overlaps are seen before discs pass.
pub const DEFAULT_DT_RADII: f64 = 0.25;

/// Most discs in one task. A disc costs about 50 bytes (position, velocity, its cell and its
/// place in the cell grid, one grid cell), so the limit bounds a task near 50 MB.
pub const MAX_PARTICLES: u32 = 1_000_000;

/// Most steps in one task.
pub const MAX_STEPS: u64 = 100_000_000;

/// Most disc-steps (`particles × steps`) in one task: about ten minutes of one core, so a task
/// cannot occupy a worker for days.
pub const MAX_DISC_STEPS: u64 = 20_000_000_000;

/// Most of the box the discs may cover. Denser boxes are not a dilute gas, and heavy overlap could
/// make the per-step list of touching pairs grow with N² instead of N.
pub const MAX_AREA_FRACTION: f64 = 0.5;

/// One simulation, as a user or a job spec gives it; [`ParticleParams::new`] fills the defaults.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ParticleParams {
    /// Number of discs.
    pub particles: u32,
    /// Number of steps of `dt`.
    pub steps: u64,
    /// Seed of the initial state (see [`Simulation::new`] for how it is used).
    pub seed: u64,
    /// Radius of every disc, in box lengths.
    pub radius: f64,
    /// Duration of one step.
    pub dt: f64,
    /// Bound of each initial velocity component.
    pub max_speed: f64,
}

impl ParticleParams {
    /// `particles` discs for `steps` steps from `seed`, with the default radius (discs covering
    /// [`DEFAULT_AREA_FRACTION`] of the box: radius = √(0.1 / (π N))), the default speed bound
    /// [`DEFAULT_MAX_SPEED`] and dt = [`DEFAULT_DT_RADII`] × radius / max_speed.
    pub fn new(particles: u32, steps: u64, seed: u64) -> Self {
        let radius = (DEFAULT_AREA_FRACTION / (std::f64::consts::PI * f64::from(particles))).sqrt();
        Self {
            particles,
            steps,
            seed,
            radius,
            dt: DEFAULT_DT_RADII * radius / DEFAULT_MAX_SPEED,
            max_speed: DEFAULT_MAX_SPEED,
        }
    }

    /// Checks every limit; the first one broken is reported, naming its field.
    pub fn validate(&self) -> Result<(), ParticleError> {
        check_count("particles", self.particles.into(), MAX_PARTICLES.into())?;
        check_count("steps", self.steps, MAX_STEPS)?;
        let work = u64::from(self.particles).saturating_mul(self.steps);
        if work > MAX_DISC_STEPS {
            return Err(ParticleError::TooMuchWork {
                work,
                max: MAX_DISC_STEPS,
            });
        }
        for (field, value) in [
            ("radius", self.radius),
            ("dt", self.dt),
            ("max_speed", self.max_speed),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(ParticleError::NotPositive { field, value });
            }
        }
        let fraction = f64::from(self.particles) * std::f64::consts::PI * self.radius * self.radius;
        if fraction > MAX_AREA_FRACTION {
            return Err(ParticleError::TooDense {
                radius: self.radius,
                particles: self.particles,
                fraction,
            });
        }
        if self.dt * self.max_speed > self.radius {
            return Err(ParticleError::StepTooLong {
                travel: self.dt * self.max_speed,
                radius: self.radius,
            });
        }
        Ok(())
    }
}

/// What a simulation reports.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ParticleOutcome {
    /// Disc–disc collisions over the whole run.
    pub collisions: u64,
    /// Disc–wall bounces over the whole run.
    pub wall_bounces: u64,
    /// Total kinetic energy (unit masses) before the first step.
    pub kinetic_energy_start: f64,
    /// Total kinetic energy after the last step.
    pub kinetic_energy_end: f64,
}

/// Runs `params` from its seed to its last step.
pub fn simulate(params: &ParticleParams) -> Result<ParticleOutcome, ParticleError> {
    let never = std::sync::atomic::AtomicBool::new(false);
    simulate_until(params, &never).map(|outcome| outcome.expect("never stopped"))
}

/// [`simulate`] that gives up when `stop` is set, checked before each step: `Ok(None)` once
/// stopped. A step costs O(particles), so a stop is seen within one step.
pub fn simulate_until(
    params: &ParticleParams,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<Option<ParticleOutcome>, ParticleError> {
    let mut simulation = Simulation::new(params)?;
    let kinetic_energy_start = simulation.kinetic_energy();
    for _ in 0..params.steps {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(None);
        }
        simulation.step();
    }
    Ok(Some(ParticleOutcome {
        collisions: simulation.collisions(),
        wall_bounces: simulation.wall_bounces(),
        kinetic_energy_start,
        kinetic_energy_end: simulation.kinetic_energy(),
    }))
}

/// A parameter or state the kernel refuses; each names the field and what is allowed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ParticleError {
    /// A count of zero or above its memory or time limit.
    #[error("{field} must be between 1 and {max}, got {value}")]
    OutOfRange {
        /// The offending field.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// Too many disc-steps for one task.
    #[error("particles × steps = {work} exceeds the limit of {max} per task; lower one of them")]
    TooMuchWork {
        /// `particles × steps`.
        work: u64,
        /// The limit.
        max: u64,
    },
    /// Zero, negative, NaN or infinite where a positive number was expected.
    #[error("{field} must be a finite number greater than 0, got {value}")]
    NotPositive {
        /// The offending field.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// Discs too large or too many for a dilute gas.
    #[error(
        "radius {radius} with {particles} particles covers {fraction:.3} of the box, more than \
         {MAX_AREA_FRACTION}; lower the radius or the number of particles"
    )]
    TooDense {
        /// The radius given.
        radius: f64,
        /// The number of discs given.
        particles: u32,
        /// Their total area over the box's.
        fraction: f64,
    },
    /// A step long enough for discs to pass through each other unseen.
    #[error("dt × max_speed = {travel} exceeds the radius {radius}; lower dt or max_speed")]
    StepTooLong {
        /// How far one velocity component may move a disc in one step.
        travel: f64,
        /// The radius given.
        radius: f64,
    },
    /// An explicit initial state that does not fit the parameters.
    #[error("initial state: {0}")]
    BadState(String),
}

fn check_count(field: &'static str, value: u64, max: u64) -> Result<(), ParticleError> {
    if value == 0 || value > max {
        return Err(ParticleError::OutOfRange { field, value, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_stop_gives_up_and_an_unset_one_changes_nothing() {
        let params = ParticleParams::new(50, 200, 3);
        let stop = std::sync::atomic::AtomicBool::new(false);
        assert_eq!(simulate_until(&params, &stop), simulate(&params).map(Some));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(simulate_until(&params, &stop), Ok(None));
    }

    #[test]
    fn defaults_are_valid_across_the_range_of_sizes() {
        for particles in [1, 2, 100, 10_000, MAX_PARTICLES] {
            assert_eq!(ParticleParams::new(particles, 10, 0).validate(), Ok(()));
        }
    }

    #[test]
    fn errors_name_the_field() {
        let zero = ParticleParams::new(0, 10, 0).validate().unwrap_err();
        assert_eq!(
            zero.to_string(),
            "particles must be between 1 and 1000000, got 0"
        );
        let mut params = ParticleParams::new(10, 10, 0);
        params.dt = f64::NAN;
        let nan = params.validate().unwrap_err();
        assert_eq!(
            nan.to_string(),
            "dt must be a finite number greater than 0, got NaN"
        );
    }
}
