//! `up --autoscale MIN-MAX`: the number of workers follows the queue. A worker (with its agent)
//! is started when tasks have waited longer than `--scale-up-after` and fewer than MAX run; a
//! worker is stopped when the grid has had nothing waiting and a worker to spare for
//! `--scale-down-after`, never below MIN. It is stopped with SIGTERM, so it finishes (or returns)
//! the tasks it holds, and it says `scaled down` to its agent as it leaves: a departure, which
//! raises no alert. The decisions are pure (`Autoscaler::decide`, given the time); `Cluster`
//! carries them out.

use std::time::{Duration, Instant};

use gridwatch::client::backlog::Backlog;
use gridwatch::client::connect::{MasterAddr, MasterClient};
use gridwatch::protocol::{Message, ScaleDirection, WorkerStatus, SCALED_DOWN};

use super::up::{wait_for_agent, Cluster};

/// How often the backlog is read.
const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How long a stopped worker may take to finish the tasks it holds before it is killed.
const RETIRE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a stopped worker's agent is kept so its last report (STOPPED) reaches the views.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(10);

/// The bounds and delays of `--autoscale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// Workers kept at least.
    pub min: usize,
    /// Workers run at most.
    pub max: usize,
    /// How long the oldest waiting task may wait before a worker is added (and the least time
    /// between two additions, so a new worker can start leasing first).
    pub up_after: Duration,
    /// How long the grid must have had nothing waiting and a worker to spare before one is
    /// stopped (and the least time between two removals).
    pub down_after: Duration,
}

/// Parses `MIN-MAX` (`1-3`; `2` alone means `2-2`).
pub fn parse_range(text: &str) -> Result<(usize, usize), String> {
    let (min, max) = text.split_once('-').unwrap_or((text, text));
    let number = |part: &str| {
        part.trim()
            .parse::<usize>()
            .map_err(|_| format!("{text:?}: expected MIN-MAX worker counts, such as 1-3"))
    };
    let (min, max) = (number(min)?, number(max)?);
    if max == 0 || min > max || max > 256 {
        return Err(format!(
            "{text:?}: MIN-MAX needs 0 <= MIN <= MAX, 1 <= MAX <= 256"
        ));
    }
    Ok((min, max))
}

/// What the autoscaler decided, with its reason for the log.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Start one worker.
    Up(String),
    /// Stop one worker.
    Down(String),
    /// Leave the grid as it is.
    Hold,
}

/// The autoscaler's memory between two looks at the queue.
#[derive(Debug)]
pub struct Autoscaler {
    policy: Policy,
    last_check: Option<Instant>,
    last_up: Option<Instant>,
    last_down: Option<Instant>,
    spare_since: Option<Instant>,
}

impl Autoscaler {
    /// An autoscaler with `policy`, which has decided nothing yet.
    pub fn new(policy: Policy) -> Autoscaler {
        Autoscaler {
            policy,
            last_check: None,
            last_up: None,
            last_down: None,
            spare_since: None,
        }
    }

    /// Its bounds and delays.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Decides from the backlog seen at `now` with `running` workers.
    pub fn decide(&mut self, backlog: &Backlog, running: usize, now: Instant) -> Decision {
        let p = self.policy;
        let waiting = backlog.waiting();
        let age = backlog.oldest_age_seconds();
        let since = |at: Option<Instant>| at.map_or(Duration::MAX, |at| now - at);
        if running < p.min {
            self.last_up = Some(now);
            return Decision::Up(format!(
                "{running} worker(s) run, fewer than the minimum {}",
                p.min
            ));
        }
        // Spare: nothing waits, and fewer tasks are held than workers run.
        let spare = waiting == 0 && (backlog.leases_in_flight as usize) < running;
        if !spare {
            self.spare_since = None;
        } else if self.spare_since.is_none() {
            self.spare_since = Some(now);
        }
        if waiting > 0
            && age >= p.up_after.as_secs_f64()
            && running < p.max
            && since(self.last_up) >= p.up_after
        {
            self.last_up = Some(now);
            return Decision::Up(format!(
                "{waiting} task(s) waiting, the oldest for {age:.1} s (over {:.1} s), {running} of at most {} worker(s) run",
                p.up_after.as_secs_f64(),
                p.max
            ));
        }
        let spare_for = since(self.spare_since);
        if spare
            && running > p.min
            && spare_for >= p.down_after
            && since(self.last_down) >= p.down_after
        {
            self.last_down = Some(now);
            self.spare_since = Some(now);
            return Decision::Down(format!(
                "nothing waiting and {} task(s) held by {running} worker(s) for {:.1} s (over {:.1} s); at least {} kept",
                backlog.leases_in_flight,
                spare_for.as_secs_f64(),
                p.down_after.as_secs_f64(),
                p.min
            ));
        }
        Decision::Hold
    }

    /// Whether it is time for another look at the queue.
    fn due(&mut self, now: Instant) -> bool {
        if self.last_check.is_some_and(|at| now - at < CHECK_EVERY) {
            return false;
        }
        self.last_check = Some(now);
        true
    }
}

impl Cluster {
    /// Looks at the queue (every half second, under `--autoscale`) and starts or stops a worker
    /// as the autoscaler decides.
    pub(super) async fn autoscale(&mut self) {
        self.retiring.retain(|task| !task.is_finished());
        let now = Instant::now();
        let Some(scaler) = self.scaler.as_mut() else {
            return;
        };
        if !scaler.due(now) {
            return;
        }
        let master = master_at(&self.spawner.master_addr);
        let backlog = match gridwatch::client::backlog::query(&master).await {
            Ok(backlog) => backlog,
            Err(err) => {
                tracing::debug!(error = %err, "autoscale: the master's backlog is unreadable for now");
                return;
            }
        };
        let outcome = match scaler.decide(&backlog, self.workers.len(), now) {
            Decision::Hold => return,
            Decision::Up(reason) => self
                .scale_up(&reason)
                .await
                .map(|id| (ScaleDirection::Up, id, reason)),
            Decision::Down(reason) => self
                .scale_down()
                .map(|id| (ScaleDirection::Down, id, reason)),
        };
        match outcome {
            Ok((direction, worker, reason)) => {
                eprintln!(
                    "autoscale {}: worker {worker}: {reason}",
                    direction.as_str()
                );
                tracing::info!(direction = direction.as_str(), worker = %worker, reason = %reason, "autoscale");
                tell_master(&master, direction, &worker, &reason).await;
            }
            Err(err) => eprintln!("autoscale: {err}"),
        }
    }

    /// Starts the lowest-numbered worker id not running, with its agent; returns the id.
    async fn scale_up(&mut self, _reason: &str) -> Result<String, String> {
        let running: Vec<String> = self.worker_pids().into_iter().map(|(id, _)| id).collect();
        let id = (1..)
            .map(|n| format!("w{n}"))
            .find(|id| !running.contains(id))
            .unwrap_or_else(|| "w0".into());
        let mut agent = self.spawner.agent(&id).map_err(|e| e.to_string())?;
        let socket = self.spawner.socket(&id);
        if let Err(err) = wait_for_agent(&socket, &id, &mut agent).await {
            agent.kill().await;
            return Err(err.to_string());
        }
        let worker = self.spawner.worker(&id).map_err(|e| e.to_string())?;
        self.agents.push(agent);
        self.workers.push(worker);
        self.sockets.push(socket);
        Ok(id)
    }

    /// Stops the newest worker: it is told why, then SIGTERM lets it finish or return its tasks;
    /// its agent stops once its STOPPED report has reached the views. Returns the id.
    fn scale_down(&mut self) -> Result<String, String> {
        let (Some(mut worker), Some(mut agent), Some(_)) =
            (self.workers.pop(), self.agents.pop(), self.sockets.pop())
        else {
            return Err("no worker to stop".into());
        };
        let id = worker.name.trim_start_matches("worker ").to_string();
        let leave = self.spawner.leave_reason_file(&id);
        if let Err(err) = std::fs::write(&leave, SCALED_DOWN) {
            eprintln!(
                "autoscale: {}: {err}; {id} leaves without saying why",
                leave.display()
            );
        }
        worker.terminate();
        let master = master_at(&self.spawner.master_addr);
        let farewell_id = id.clone();
        self.retiring.push(tokio::spawn(async move {
            worker.reap_within(RETIRE_TIMEOUT).await;
            let deadline = Instant::now() + FAREWELL_TIMEOUT;
            while Instant::now() < deadline && !reported_stopped(&master, &farewell_id).await {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            agent.terminate();
            agent.reap().await;
        }));
        Ok(id)
    }
}

/// The local master, as the clients reach it.
fn master_at(address: &str) -> MasterAddr {
    MasterAddr {
        master: Some(address.to_string()),
        auth: gridwatch::protocol::TokenArgs::default(),
        tls: gridwatch::protocol::TlsArgs::default(),
    }
}

/// Whether the views show `worker` as stopped (its agent's last report arrived).
async fn reported_stopped(master: &MasterAddr, worker: &str) -> bool {
    let Ok(mut client) = MasterClient::connect(master).await else {
        return false;
    };
    match client.request(&Message::ListWorkers).await {
        Ok(Message::Workers { workers }) => workers
            .iter()
            .any(|w| w.worker_id == worker && w.status == WorkerStatus::Stopped),
        _ => false,
    }
}

/// Tells the master of a decision, for `gridwatch_autoscale_events_total` and its log.
async fn tell_master(master: &MasterAddr, direction: ScaleDirection, worker: &str, reason: &str) {
    let message = Message::AutoscaleEvent {
        direction,
        worker_id: worker.to_string(),
        reason: reason.to_string(),
    };
    let told = match MasterClient::connect(master).await {
        Ok(mut client) => client.request(&message).await.map(|_| ()),
        Err(err) => Err(err),
    };
    if let Err(err) = told {
        eprintln!("autoscale: the master was not told ({err}); its counter misses this one");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridwatch::backend::Priority;
    use gridwatch::protocol::QueueLevel;

    fn backlog(waiting: u64, age: f64, leases: u64) -> Backlog {
        Backlog {
            priorities: vec![QueueLevel {
                priority: Priority::Medium,
                tasks: waiting,
                oldest_task_age_seconds: age,
            }],
            leases_in_flight: leases,
            active_workers: 0,
        }
    }

    fn policy() -> Policy {
        Policy {
            min: 1,
            max: 3,
            up_after: Duration::from_secs(2),
            down_after: Duration::from_secs(5),
        }
    }

    #[test]
    fn ranges_parse_and_nonsense_is_refused() {
        assert_eq!(parse_range("1-3"), Ok((1, 3)));
        assert_eq!(parse_range("2"), Ok((2, 2)));
        assert_eq!(parse_range("0-4"), Ok((0, 4)));
        for bad in ["3-1", "a-b", "0-0", "1-", "-2", "1-1000"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_backlog_older_than_the_delay_adds_workers_one_delay_apart_up_to_max() {
        let mut scaler = Autoscaler::new(policy());
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        assert_eq!(
            scaler.decide(&backlog(30, 1.0, 1), 1, at(0.0)),
            Decision::Hold
        );
        assert!(matches!(
            scaler.decide(&backlog(30, 2.5, 1), 1, at(1.5)),
            Decision::Up(_)
        ));
        assert_eq!(
            scaler.decide(&backlog(30, 3.0, 1), 2, at(2.0)),
            Decision::Hold,
            "too soon"
        );
        assert!(matches!(
            scaler.decide(&backlog(30, 4.0, 2), 2, at(3.5)),
            Decision::Up(_)
        ));
        assert_eq!(
            scaler.decide(&backlog(30, 9.0, 3), 3, at(9.0)),
            Decision::Hold,
            "at max"
        );
    }

    #[test]
    fn spare_workers_go_one_delay_apart_down_to_min() {
        let mut scaler = Autoscaler::new(policy());
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        assert_eq!(
            scaler.decide(&backlog(0, 0.0, 3), 3, at(0.0)),
            Decision::Hold,
            "all busy"
        );
        assert_eq!(
            scaler.decide(&backlog(0, 0.0, 1), 3, at(1.0)),
            Decision::Hold
        );
        assert_eq!(
            scaler.decide(&backlog(0, 0.0, 1), 3, at(5.9)),
            Decision::Hold
        );
        assert!(matches!(
            scaler.decide(&backlog(0, 0.0, 1), 3, at(6.0)),
            Decision::Down(_)
        ));
        assert_eq!(
            scaler.decide(&backlog(0, 0.0, 0), 2, at(8.0)),
            Decision::Hold
        );
        assert!(matches!(
            scaler.decide(&backlog(0, 0.0, 0), 2, at(11.0)),
            Decision::Down(_)
        ));
        assert_eq!(
            scaler.decide(&backlog(0, 0.0, 0), 1, at(30.0)),
            Decision::Hold,
            "at min"
        );
    }

    #[test]
    fn work_arriving_resets_the_spare_time() {
        let mut scaler = Autoscaler::new(policy());
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        assert_eq!(
            scaler.decide(&backlog(0, 0.0, 0), 2, at(0.0)),
            Decision::Hold
        );
        assert_eq!(
            scaler.decide(&backlog(4, 0.1, 2), 2, at(3.0)),
            Decision::Hold
        );
        assert_eq!(
            scaler.decide(&backlog(0, 0.0, 1), 2, at(4.0)),
            Decision::Hold
        );
        assert_eq!(
            scaler.decide(&backlog(0, 0.0, 1), 2, at(8.0)),
            Decision::Hold,
            "spare 4 s only"
        );
        assert!(matches!(
            scaler.decide(&backlog(0, 0.0, 1), 2, at(9.0)),
            Decision::Down(_)
        ));
    }

    #[test]
    fn below_min_a_worker_is_started_at_once() {
        let mut scaler = Autoscaler::new(Policy { min: 2, ..policy() });
        assert!(matches!(
            scaler.decide(&backlog(0, 0.0, 0), 1, Instant::now()),
            Decision::Up(_)
        ));
    }
}
