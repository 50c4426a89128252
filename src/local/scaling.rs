//! `up --autoscale`: the running grid carrying out the autoscaler's decisions. It starts a worker
//! with its agent, or stops one with SIGTERM after telling it to say `scaled down` as it leaves,
//! and tells the master of each step so the dashboard shows it.

use std::time::{Duration, Instant};

use crate::client::connect::{MasterAddr, MasterClient};
use gridwatch::protocol::{Message, ScaleDirection, WorkerStatus, SCALED_DOWN};

use super::autoscale::Decision;
use super::up::{wait_for_agent, Cluster};

/// How long a stopped worker may take to finish the tasks it holds before it is killed.
const RETIRE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a stopped worker's agent is kept so its last report (STOPPED) reaches the views.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(10);

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
        let backlog = match crate::client::backlog::query(&master).await {
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
