//! `gridwatch workers` and `gridwatch alerts`: the watchman's view of the grid, asked of the
//! master (or, with `--collector`, of the collector directly).

use super::connect::{http_port_mistake, not_the_master, unexpected, ClientError, MasterAddr};
use gridwatch::protocol::{
    Alert, AlertState, Dial, ErrorCode, Greeting, LivenessState, Message, RequestError, Requester,
    Role, ServerRole, TaskUsage, WorkerView,
};

/// Where `workers` and `alerts` ask.
#[derive(Clone, Debug, clap::Args)]
pub struct MonitorArgs {
    /// The master, its token and TLS: the same flags and environment as every client command.
    #[command(flatten)]
    pub target: MasterAddr,
    /// Ask this collector (`host:port`) instead of the master; it wins over `--master` and
    /// `GRIDWATCH_MASTER`, so an exported master address never hides it.
    #[arg(long, value_parser = super::connect::host_port)]
    pub collector: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl MonitorArgs {
    fn address(&self) -> (String, &'static str) {
        match &self.collector {
            Some(collector) => (collector.clone(), "collector"),
            None => (self.target.address(), "master"),
        }
    }

    /// The server `address` is meant to be.
    fn expected(&self) -> ServerRole {
        match self.collector {
            Some(_) => ServerRole::Collector,
            None => ServerRole::Master,
        }
    }
}

async fn ask(args: &MonitorArgs, request: Message) -> Result<Message, ClientError> {
    let (address, role) = args.address();
    let greeting = Greeting::new(Role::Client).with_token(args.target.auth.resolve()?);
    let refused = |code, message| ClientError::Refused {
        code,
        message: format!("the {role} refused ({code}): {message}"),
    };
    let dial = Dial {
        tls: args.target.tls.client()?,
        ..Dial::default()
    };
    let mut requester = match Requester::connect(&address, &greeting, &dial).await {
        Ok(requester) => requester,
        Err(RequestError::Unreachable { address, reason }) => {
            return Err(ClientError::Unreachable {
                addr: address,
                reason,
                role,
            })
        }
        Err(RequestError::Refused { code, message }) => return Err(refused(code, message)),
        Err(err) => return Err(http_port_mistake(&address, &err).unwrap_or_else(|| err.into())),
    };
    // Both servers answer these requests: a wrong port would show the other one's view unnoticed.
    match (requester.server_role(), args.expected()) {
        (Some(found), ServerRole::Master) if found != ServerRole::Master => {
            return Err(not_the_master(&address, found))
        }
        (Some(ServerRole::Master), ServerRole::Collector) => {
            return Err(ClientError::Usage(format!(
                "{address} is the gridwatch master, not a collector: give --collector the \
                 collector's address, or leave --collector out to ask the master"
            )))
        }
        _ => {}
    }
    match requester.request(&request).await {
        Err(RequestError::Refused { code, message }) => Err(refused(code, message)),
        reply => Ok(reply?),
    }
}

/// Writes a rendered table to stdout; a closed stdout is an error, not a panic.
fn print_text(text: &str) -> Result<(), ClientError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Writes to stdout without panicking when it is closed (`gridwatch alerts --json | head`): the
/// error becomes `ClientError::Output`, which exits quietly on a broken pipe.
fn print_json<T: serde::Serialize>(value: &T) -> Result<(), ClientError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).map_err(std::io::Error::other)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// `gridwatch workers --performance`: task counts and times per worker and kind.
async fn performance(args: MonitorArgs) -> Result<(), ClientError> {
    let workers = match ask(&args, Message::ListPerformance).await? {
        Message::Performance { workers } => workers,
        other => return Err(unexpected(&other)),
    };
    if args.json {
        return print_json(&workers);
    }
    let seconds = |value: Option<f64>| value.map_or("-".to_string(), |s| format!("{s:.3}"));
    println!(
        "{:<12} {:<10} {:>7} {:>10} {:>10}",
        "WORKER", "KIND", "TASKS", "MEAN_S", "P95_S"
    );
    for worker in &workers {
        for kind in &worker.kinds {
            println!(
                "{:<12} {:<10} {:>7} {:>10} {:>10}",
                worker.worker_id,
                kind.kind,
                kind.tasks_completed,
                seconds(kind.mean_secs),
                seconds(kind.p95_secs)
            );
        }
    }
    if workers.is_empty() {
        println!("no worker has completed a task yet");
    }
    Ok(())
}

/// `gridwatch workers`.
#[derive(Clone, Debug, clap::Args)]
pub struct WorkersArgs {
    /// Where to ask, and the output format.
    #[command(flatten)]
    pub query: MonitorArgs,
    /// Make the master forget this dead or inactive worker (a live one is refused).
    #[arg(long, value_name = "ID", conflicts_with = "collector")]
    pub forget: Option<String>,
    /// Show each worker's tasks completed and mean / 95th percentile task time per job kind
    /// (asked of the master) instead of liveness.
    #[arg(long, conflicts_with_all = ["collector", "forget"])]
    pub performance: bool,
}

/// `gridwatch workers`: the liveness view of every worker, or `--forget ID`.
pub async fn workers(args: WorkersArgs) -> Result<(), ClientError> {
    if let Some(worker) = &args.forget {
        return forget(&args.query, worker).await;
    }
    if args.performance {
        return performance(args.query).await;
    }
    let args = args.query;
    let mut workers = match ask(&args, Message::ListWorkers).await? {
        Message::Workers { workers } => workers,
        other => return Err(unexpected(&other)),
    };
    workers.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
    if args.json {
        return print_json(&workers);
    }
    print_text(&workers_table(&workers))?;
    Ok(())
}

/// `gridwatch workers --forget ID`.
async fn forget(args: &MonitorArgs, worker: &str) -> Result<(), ClientError> {
    let request = Message::ForgetWorker {
        worker_id: worker.to_string(),
    };
    match ask(args, request).await {
        Ok(Message::WorkerForgotten { worker_id }) => {
            if args.json {
                return print_json(&serde_json::json!({ "forgotten": worker_id }));
            }
            println!("forgot worker {worker_id}");
            Ok(())
        }
        Ok(other) => Err(unexpected(&other)),
        // A refusal the user can act on (unknown id, live worker): say it plainly.
        Err(ClientError::Refused {
            code: ErrorCode::NoSuchWorker | ErrorCode::WorkerAlive,
            message,
        }) => {
            let reason = message
                .split_once("): ")
                .map_or(message.as_str(), |(_, m)| m);
            Err(ClientError::Usage(format!("cannot forget: {reason}")))
        }
        Err(err) => Err(err),
    }
}

/// Renders the `workers` table, ending with a plain sentence when no worker is alive.
pub fn workers_table(workers: &[WorkerView]) -> String {
    let mut out = String::new();
    if !workers.is_empty() {
        out.push_str(&format!(
            "{:<12} {:<9} {:<11} {:>6} {:>8} {:>9} {:>8} {:>7} {:>6} {:>6}  {}\n",
            "WORKER",
            "STATE",
            "STATUS",
            "MISSED",
            "RTT_MS",
            "UPTIME",
            "DELIVERY",
            "TASKS",
            "CPU%",
            "MEM%",
            "LEASING"
        ));
    }
    for w in workers {
        out.push_str(&worker_row(w));
    }
    out.push_str(&running_tasks_table(workers));
    if workers.iter().any(|w| w.state != LivenessState::NoAgent) {
        out.push_str(
            "DELIVERY is the share of the agent's expected reports that reached the collector \
             (report delivery), not of tasks\n",
        );
    }
    for w in workers.iter().filter(|w| w.leasing_paused) {
        let why = w
            .pause_reason
            .as_deref()
            .unwrap_or("a firing resource warning");
        out.push_str(&format!(
            "{} leases no new tasks until {why} resolves (see `gridwatch alerts`)\n",
            w.worker_id
        ));
    }
    for w in workers.iter().filter(|w| w.state == LivenessState::NoAgent) {
        out.push_str(&format!(
            "{} leases tasks but no agent reports on it: no metrics, no alerts, and its death \
             is noticed only when its leases expire (start `gridwatch agent` beside it)\n",
            w.worker_id
        ));
    }
    let active = workers
        .iter()
        .filter(|w| w.state != LivenessState::Inactive)
        .count();
    if active == 0 {
        out.push_str(&match workers.len() {
            0 => "no active machines: no worker has reported (are the collector and an agent per worker running?)\n".to_string(),
            1 => "no active machines: the one known worker is inactive\n".to_string(),
            n => format!("no active machines: all {n} known workers are inactive\n"),
        });
    }
    out
}

/// One row of the `workers` table; a worker without an agent has dashes for what only an
/// agent measures.
fn worker_row(w: &WorkerView) -> String {
    let dash = || "-".to_string();
    let reported = w.state != LivenessState::NoAgent;
    // The last report's status is stale once the host is lost: say what is known.
    // A worker that left cleanly is expected to go quiet, its agent with it.
    let stopped = w.status == gridwatch::protocol::WorkerStatus::Stopped;
    let status = match (reported, w.unreachable && !stopped) {
        (false, _) => "-",
        (true, true) => "UNREACHABLE",
        (true, false) => w.status_label(),
    };
    let figure = |value: f64, suffix: &str| {
        if reported {
            format!("{value:.1}{suffix}")
        } else {
            dash()
        }
    };
    format!(
        "{:<12} {:<9} {:<11} {:>6} {:>8} {:>9} {:>8} {:>7} {:>6} {:>6}  {}\n",
        w.worker_id,
        w.state.as_str(),
        status,
        if reported {
            w.consecutive_missed.to_string()
        } else {
            dash()
        },
        w.mean_rtt_ms
            .map(|r| format!("{r:.1}"))
            .unwrap_or_else(dash),
        w.uptime_secs.map(format_uptime).unwrap_or_else(dash),
        figure(w.success_rate * 100.0, "%"),
        if reported {
            w.tasks_done.to_string()
        } else {
            dash()
        },
        figure(w.latest.cpu_percent, ""),
        figure(w.latest.memory_percent, ""),
        if w.leasing_paused { "paused" } else { "ok" },
    )
}

/// The tasks the workers run now, one line each with its process group's CPU and memory
/// (dashes for a task that runs inside its worker process); empty when none runs.
fn running_tasks_table(workers: &[WorkerView]) -> String {
    let running: Vec<(&str, &TaskUsage)> = workers
        .iter()
        .filter(|w| !matches!(w.state, LivenessState::NoAgent | LivenessState::Inactive))
        .flat_map(|w| w.latest.tasks.iter().map(|t| (w.worker_id.as_str(), t)))
        .collect();
    if running.is_empty() {
        return String::new();
    }
    let width = running
        .iter()
        .map(|(_, t)| t.task.chars().count())
        .max()
        .unwrap_or(0)
        .max("RUNNING TASK".len());
    let figure = |value: Option<f64>| value.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    let mut out = format!(
        "\n{:<width$} {:<12} {:>8} {:>7} {:>9} {:>5}\n",
        "RUNNING TASK", "WORKER", "PID", "CPU%", "RSS_MiB", "PROCS"
    );
    for (worker, task) in running {
        out.push_str(&format!(
            "{:<width$} {:<12} {:>8} {:>7} {:>9} {:>5}\n",
            task.task,
            worker,
            task.pid.map_or_else(|| "-".to_string(), |p| p.to_string()),
            figure(task.cpu_percent),
            figure(task.rss_mb),
            task.processes
                .map_or_else(|| "-".to_string(), |n| n.to_string()),
        ));
    }
    out.push('\n');
    out
}

fn format_uptime(secs: f64) -> String {
    let secs = secs as u64;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

/// How many alerts `gridwatch alerts` shows.
#[derive(Clone, Debug, clap::Args)]
pub struct AlertsArgs {
    /// Where to ask, and the output format.
    #[command(flatten)]
    pub query: MonitorArgs,
    /// Show at most this many, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
}

/// `gridwatch alerts`: the most recent alert events.
pub async fn alerts(args: AlertsArgs) -> Result<(), ClientError> {
    let request = Message::ListAlerts { limit: args.limit };
    let alerts = match ask(&args.query, request).await? {
        Message::Alerts { alerts } => alerts,
        other => return Err(unexpected(&other)),
    };
    if args.query.json {
        return print_json(&alerts);
    }
    print_text(&alerts_table(&alerts))?;
    Ok(())
}

/// Renders the `alerts` table.
pub fn alerts_table(alerts: &[Alert]) -> String {
    if alerts.is_empty() {
        return "no alerts\n".into();
    }
    let mut out = format!(
        "{:<19}  {:<8} {:<8} {:<12} {:<12} {}\n",
        "TIME (UTC)", "SEVERITY", "STATE", "WORKER", "RULE", "MESSAGE"
    );
    for a in alerts {
        let state = match a.state {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        };
        out.push_str(&format!(
            "{:<19}  {:<8} {:<8} {:<12} {:<12} {}\n",
            format_utc(a.timestamp),
            a.severity.as_str(),
            state,
            a.worker_id,
            a.rule,
            a.message
        ));
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS` in UTC for a Unix time (civil-from-days, H. Hinnant).
pub fn format_utc(unix_secs: f64) -> String {
    let secs = unix_secs.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting_matches_known_dates() {
        assert_eq!(format_utc(0.0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400.0), "2000-02-29 00:00:00");
        assert_eq!(format_utc(1_795_608_000.0), "2026-11-25 12:00:00");
    }

    #[test]
    fn no_workers_is_said_plainly() {
        assert!(workers_table(&[]).starts_with("no active machines"));
    }

    #[test]
    fn each_running_task_gets_a_line_with_its_figures_and_dashes_for_what_is_unknown() {
        let mut busy = WorkerView::without_agent("w1", 0.0);
        busy.state = LivenessState::Active;
        busy.latest.tasks = vec![
            TaskUsage {
                task: "sims/7".into(),
                pid: Some(4242),
                cpu_percent: Some(99.46),
                rss_mb: Some(200.04),
                processes: Some(3),
            },
            TaskUsage {
                task: "genome/12".into(),
                pid: None,
                cpu_percent: None,
                rss_mb: None,
                processes: None,
            },
        ];
        let table = workers_table(&[busy]);
        let line = |id: &str| {
            let line = table.lines().find(|l| l.starts_with(id));
            line.unwrap_or_else(|| panic!("no line for {id}:\n{table}"))
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            line("sims/7"),
            ["sims/7", "w1", "4242", "99.5", "200.0", "3"]
        );
        assert_eq!(line("genome/12"), ["genome/12", "w1", "-", "-", "-", "-"]);
        let idle = WorkerView::without_agent("w2", 0.0);
        assert!(!workers_table(&[idle]).contains("RUNNING TASK"));
    }
}
