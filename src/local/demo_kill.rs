//! `gridwatch demo --kill-worker`: once the job is under way, kill -9 one worker
//! and show what the watchman does: the collector's DEAD alert, the master re-queueing the dead
//! worker's tasks, and (in the demo) the exact result with the remaining workers.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::up::Cluster;
use crate::client::connect::ClientError;
use gridwatch::protocol::{Alert, Dial, Greeting, Message, Requester, Role};

/// How long the worker stays frozen before the kill: long enough for a chunk or two to arrive,
/// far shorter than the heartbeat timeout, so the watchman sees a crash, not a hang.
const FROZEN: Duration = Duration::from_millis(50);

/// How long to wait for each step before saying it did not happen.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until the job has `done` chunks processed, kills the first worker, then prints the
/// alert and the re-queue as they happen.
///
/// Workers keep up with an upload: a job's chunks are searched as they arrive, and the last ones
/// within milliseconds of the upload's end. So the kill comes early, while the upload still
/// runs, and the worker is frozen (SIGSTOP) for a moment first: a running worker mostly waits for
/// the next chunk and may hold nothing at the instant of a kill, while a frozen one still
/// receives the chunk its waiting lease request asked for. The kill then leaves a task for the
/// watchman to re-queue, as a crash under load would.
pub async fn kill_one_worker(cluster: &Cluster, done: u32) -> Result<(), ClientError> {
    let Some((worker, Some(pid))) = cluster.worker_pids().into_iter().next() else {
        return Err(ClientError::Usage(
            "--kill-worker needs at least one worker".into(),
        ));
    };
    wait_for_progress(&cluster.master_addr, done).await?;
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGSTOP);
    tokio::time::sleep(FROZEN).await;
    let killed = Instant::now();
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    eprintln!("demo     kill -9 worker {worker} (pid {pid}) mid-job");

    let alert = poll(|| dead_alert(&cluster.alert_log, &worker)).await?;
    eprintln!(
        "collector {}: {} (alert after {} ms)",
        alert.severity.as_str(),
        alert.message,
        killed.elapsed().as_millis()
    );
    let log = cluster.log_dir.join("master.log");
    let reclaimed = poll(|| requeued(&log, &worker)).await?;
    eprintln!(
        "master   worker_down {worker}: re-queued {reclaimed} task(s) at once ({} ms after the kill)",
        killed.elapsed().as_millis()
    );
    Ok(())
}

/// Polls the master's job list until the newest job has `done` chunks processed.
async fn wait_for_progress(master: &str, done: u32) -> Result<(), ClientError> {
    let deadline = Instant::now() + STEP_TIMEOUT * 4;
    while Instant::now() < deadline {
        if job_done(master)
            .await
            .is_some_and(|processed| processed >= done)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err(ClientError::Usage(
        "the demo job never got under way; see the logs".into(),
    ))
}

async fn job_done(master: &str) -> Option<u32> {
    let greeting = Greeting::new(Role::Client);
    let mut requester = Requester::connect(master, &greeting, &Dial::default())
        .await
        .ok()?;
    let Message::Jobs { jobs, .. } = requester.request(&Message::ListJobs).await.ok()? else {
        return None;
    };
    jobs.first().map(|job| job.progress.processed_chunks)
}

async fn poll<T>(mut probe: impl FnMut() -> Option<T>) -> Result<T, ClientError> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        if let Some(value) = probe() {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(ClientError::Usage(
                "the watchman did not react in time; see the logs".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn dead_alert(alert_log: &Path, worker: &str) -> Option<Alert> {
    let text = std::fs::read_to_string(alert_log).ok()?;
    text.lines()
        .filter_map(|line| serde_json::from_str::<Alert>(line).ok())
        .find(|alert| alert.worker_id == worker && alert.means_worker_down())
}

fn requeued(master_log: &Path, worker: &str) -> Option<u64> {
    let text = std::fs::read_to_string(master_log).ok()?;
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|line| {
            let fields = &line["fields"];
            if fields["worker"] != worker {
                return None;
            }
            // A worker killed before it held a task has nothing to re-queue: the master says so.
            match fields["message"].as_str() {
                Some("re-queued the dead worker's tasks") => fields["reclaimed"].as_u64(),
                Some("the collector re-queued the dead worker's tasks already") => {
                    fields["requeued_by_collector"].as_u64()
                }
                Some("the dead worker holds no tasks: nothing to re-queue") => Some(0),
                _ => None,
            }
        })
}
