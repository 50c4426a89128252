//! Damping of flapping workers. A worker whose alerts fire or resolve more than `changes` times
//! within `window` gets one `worker_flapping` alert; from then on its alert events are held
//! back (no alert lines, no `worker_down` per transition) until it has been stable for a whole
//! window. Then the flapping alert resolves, and each rule's last held event is sent if it
//! changes what was last said about that rule: a worker that ended dead is reported dead (and
//! its tasks re-queued) once, a worker that ended alive has its open alert resolved.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use super::clock::Moment;
use crate::protocol::{Alert, AlertState, Severity};

/// The rule name of the flapping alert.
pub const FLAPPING_RULE: &str = "worker_flapping";

/// When a worker counts as flapping.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlapSettings {
    /// Alert events (firings and resolutions) allowed within `window`; one more is flapping.
    pub changes: u32,
    /// The window; a flapping worker is stable again after a whole window without an event.
    pub window: Duration,
}

/// One flapping spell.
#[derive(Debug)]
struct Spell {
    /// The firing `worker_flapping` alert, resolved when the spell ends.
    alert: Alert,
    last_change: Moment,
    /// The last event held back per rule.
    held: BTreeMap<String, Alert>,
}

#[derive(Debug, Default)]
struct WorkerFlaps {
    recent: VecDeque<Moment>,
    spell: Option<Spell>,
}

/// Decides which alert events go out; keeps per worker its recent events and what was last
/// said about each of its rules.
#[derive(Debug)]
pub struct FlapDamper {
    settings: FlapSettings,
    workers: HashMap<String, WorkerFlaps>,
    /// The last event sent per (worker, rule).
    last_sent: HashMap<(String, String), Alert>,
}

impl FlapDamper {
    /// A damper with `settings`.
    pub fn new(settings: FlapSettings) -> FlapDamper {
        FlapDamper {
            settings: FlapSettings {
                changes: settings.changes.max(1),
                window: settings.window,
            },
            workers: HashMap::new(),
            last_sent: HashMap::new(),
        }
    }

    /// Takes one alert event at `now`; returns what to send: the event itself, the flapping
    /// alert that starts a spell (the event is then held), or nothing during a spell.
    pub fn pass(&mut self, alert: Alert, now: Moment) -> Vec<Alert> {
        let worker = self.workers.entry(alert.worker_id.clone()).or_default();
        worker.recent.push_back(now);
        while worker
            .recent
            .front()
            .is_some_and(|at| now.since(*at) > self.settings.window)
        {
            worker.recent.pop_front();
        }
        if let Some(spell) = &mut worker.spell {
            spell.last_change = now;
            spell.held.insert(alert.rule.clone(), alert);
            return Vec::new();
        }
        if worker.recent.len() > self.settings.changes as usize {
            let flapping =
                flapping_alert(&alert.worker_id, worker.recent.len(), &self.settings, now);
            let mut held = BTreeMap::new();
            held.insert(alert.rule.clone(), alert);
            worker.spell = Some(Spell {
                alert: flapping.clone(),
                last_change: now,
                held,
            });
            return vec![flapping];
        }
        self.last_sent
            .insert((alert.worker_id.clone(), alert.rule.clone()), alert.clone());
        vec![alert]
    }

    /// Ends the spells of workers stable for a whole window at `now`; returns, per ended spell,
    /// the flapping alert's resolution and the held events that change what was last said.
    pub fn settle(&mut self, now: Moment) -> Vec<Alert> {
        let window = self.settings.window;
        let stable: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| {
                w.spell
                    .as_ref()
                    .is_some_and(|spell| now.since(spell.last_change) >= window)
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in stable {
            let Some(worker) = self.workers.get_mut(&id) else {
                continue;
            };
            worker.recent.clear();
            let Some(spell) = worker.spell.take() else {
                continue;
            };
            out.push(Alert {
                state: AlertState::Resolved,
                message: format!("resolved: worker {id} is stable again"),
                timestamp: now.unix_secs,
                ..spell.alert
            });
            for (rule, held) in spell.held {
                let key = (id.clone(), rule);
                let last = self.last_sent.get(&key);
                let was_firing = last.is_some_and(|a| a.state == AlertState::Firing);
                let send = match held.state {
                    AlertState::Firing if !was_firing => Some(held),
                    // Resolve the alert that was sent, under its own id.
                    AlertState::Resolved if was_firing => last.map(|sent| Alert {
                        id: sent.id.clone(),
                        active_since: sent.active_since,
                        ..held
                    }),
                    _ => None,
                };
                if let Some(alert) = send {
                    self.last_sent.insert(key, alert.clone());
                    out.push(alert);
                }
            }
        }
        out
    }

    /// Whether `worker` is in a flapping spell.
    pub fn is_flapping(&self, worker: &str) -> bool {
        self.workers.get(worker).is_some_and(|w| w.spell.is_some())
    }
}

fn flapping_alert(worker: &str, changes: usize, settings: &FlapSettings, now: Moment) -> Alert {
    let window = settings.window.as_secs_f64();
    Alert {
        id: format!(
            "{FLAPPING_RULE}-{worker}-{}",
            (now.unix_secs * 1000.0) as u64
        ),
        rule: FLAPPING_RULE.into(),
        severity: Severity::Warning,
        worker_id: worker.to_string(),
        state: AlertState::Firing,
        message: format!(
            "worker {worker} is flapping: {changes} alert changes within {window} s; its alerts \
             are held until it is stable for {window} s"
        ),
        value: Some(changes as f64),
        active_since: now.unix_secs,
        timestamp: now.unix_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(worker: &str, state: AlertState, n: u32, now: Moment) -> Alert {
        Alert {
            id: format!("worker_dead-{worker}-{n}"),
            rule: "worker_dead".into(),
            severity: Severity::Critical,
            worker_id: worker.into(),
            state,
            message: format!("worker {worker} is DEAD"),
            value: None,
            active_since: now.unix_secs,
            timestamp: now.unix_secs,
        }
    }

    /// Flaps `worker` DEAD/ALIVE `times` times, a second apart from `start`; returns what was
    /// sent and the moment of the last event.
    fn flap(
        damper: &mut FlapDamper,
        worker: &str,
        times: u32,
        start: Moment,
    ) -> (Vec<Alert>, Moment) {
        let mut sent = Vec::new();
        let mut now = start;
        for n in 0..times {
            now = start.plus(Duration::from_secs(u64::from(n)));
            let state = if n % 2 == 0 {
                AlertState::Firing
            } else {
                AlertState::Resolved
            };
            sent.extend(damper.pass(event(worker, state, n / 2, now), now));
        }
        (sent, now)
    }

    #[test]
    fn a_flapping_worker_gets_one_alert_then_quiet_then_its_final_state() {
        let settings = FlapSettings {
            changes: 4,
            window: Duration::from_secs(60),
        };
        let mut damper = FlapDamper::new(settings);
        let start = Moment::now();
        // 101 events: it ends DEAD.
        let (sent, last) = flap(&mut damper, "w1", 101, start);
        let rules: Vec<&str> = sent.iter().map(|a| a.rule.as_str()).collect();
        assert_eq!(
            rules,
            [
                "worker_dead",
                "worker_dead",
                "worker_dead",
                "worker_dead",
                FLAPPING_RULE
            ],
            "four events, then one flapping alert, then nothing"
        );
        assert!(damper.is_flapping("w1"));
        assert!(
            damper.settle(last.plus(Duration::from_secs(59))).is_empty(),
            "not stable yet"
        );
        let settled = damper.settle(last.plus(Duration::from_secs(60)));
        assert_eq!(settled.len(), 2, "{settled:?}");
        assert_eq!(
            (settled[0].rule.as_str(), settled[0].state),
            (FLAPPING_RULE, AlertState::Resolved)
        );
        assert_eq!(settled[0].id, sent[4].id, "resolved under its own id");
        assert_eq!(
            (settled[1].rule.as_str(), settled[1].state),
            ("worker_dead", AlertState::Firing),
            "it ended dead after its last sent event resolved: dead once more"
        );
        assert!(!damper.is_flapping("w1"));
        // An honest single death afterwards goes out at once.
        let later = last.plus(Duration::from_secs(200));
        let resolved = damper.pass(event("w1", AlertState::Resolved, 99, later), later);
        assert_eq!(resolved.len(), 1);
    }

    #[test]
    fn a_spell_that_ends_alive_resolves_the_open_alert_under_its_id() {
        let settings = FlapSettings {
            changes: 3,
            window: Duration::from_secs(10),
        };
        let mut damper = FlapDamper::new(settings);
        let start = Moment::now();
        // Events 0..=2 go out (firing, resolved, firing), event 3 starts the spell; it ends
        // after event 9, resolved.
        let (sent, last) = flap(&mut damper, "w2", 10, start);
        assert_eq!(sent.len(), 4);
        let open = &sent[2];
        assert_eq!(open.state, AlertState::Firing);
        let settled = damper.settle(last.plus(Duration::from_secs(10)));
        assert_eq!(settled.len(), 2, "{settled:?}");
        assert_eq!(settled[1].state, AlertState::Resolved);
        assert_eq!(settled[1].id, open.id);
        // Other workers were never affected.
        let now = last;
        assert_eq!(
            damper
                .pass(event("w3", AlertState::Firing, 0, now), now)
                .len(),
            1
        );
    }
}
