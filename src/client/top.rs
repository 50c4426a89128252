//! `gridwatch top`: a live terminal view of the grid (workers, jobs, latest alerts), redrawn in
//! place every `--interval`; `q` or Esc quits. It asks the master the same questions as
//! `gridwatch workers`, `jobs` and `alerts`, over one connection kept open between refreshes.

use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::connect::{unexpected, ClientError, MasterAddr, MasterClient};
use super::monitor::format_utc;
use crate::backend::JobStatus;
use crate::protocol::{Alert, AlertState, JobView, LivenessState, Message, Severity, WorkerView};

/// `gridwatch top`.
#[derive(Clone, Debug, clap::Args)]
pub struct TopArgs {
    /// Where the master is.
    #[command(flatten)]
    pub master: MasterAddr,
    /// Time between refreshes (e.g. `1s`, `500ms`).
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.strip_suffix("ms") {
        Some(number) => (number, 0.001),
        None => (text.strip_suffix('s').unwrap_or(text), 1.0),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 1s or 500ms"))?;
    if !(value > 0.0 && value * unit <= 3600.0) {
        return Err(format!("{text:?}: pick between 1ms and 3600s"));
    }
    Ok(Duration::from_secs_f64(value * unit))
}

/// What one refresh read from the master.
#[derive(Default)]
struct View {
    workers: Vec<WorkerView>,
    jobs: Vec<JobView>,
    alerts: Vec<Alert>,
    error: Option<String>,
    updated: Option<f64>,
}

/// Alerts shown at the bottom.
const ALERTS: u32 = 8;

/// Runs the live view until `q`.
pub async fn top(args: TopArgs) -> Result<(), ClientError> {
    // Fail before taking over the terminal when the master cannot be reached at all.
    let mut client = Some(MasterClient::connect(&args.master).await?);
    let mut terminal = ratatui::try_init()?;
    let outcome = run(&args, &mut terminal, &mut client).await;
    ratatui::restore();
    outcome
}

async fn run(
    args: &TopArgs,
    terminal: &mut ratatui::DefaultTerminal,
    client: &mut Option<MasterClient>,
) -> Result<(), ClientError> {
    let address = args.master.address();
    let mut view = View::default();
    loop {
        refresh(args, client, &mut view).await;
        terminal.draw(|frame| draw(frame, &address, &view))?;
        let next = Instant::now() + args.interval;
        while let Some(left) = next.checked_duration_since(Instant::now()) {
            let slice = left.min(Duration::from_millis(50));
            if !tokio::task::block_in_place(|| event::poll(slice))? {
                continue;
            }
            match tokio::task::block_in_place(event::read)? {
                Event::Key(key) if key.kind == KeyEventKind::Press => {
                    let ctrl_c = key.code == KeyCode::Char('c')
                        && key.modifiers.contains(KeyModifiers::CONTROL);
                    if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                        return Ok(());
                    }
                }
                Event::Resize(..) => {
                    terminal.draw(|frame| draw(frame, &address, &view))?;
                }
                _ => {}
            }
        }
    }
}

/// Reads the grid; on failure keeps the last view, says why, and reconnects next time.
async fn refresh(args: &TopArgs, client: &mut Option<MasterClient>, view: &mut View) {
    if client.is_none() {
        match MasterClient::connect(&args.master).await {
            Ok(connected) => *client = Some(connected),
            Err(err) => {
                view.error = Some(err.to_string());
                return;
            }
        }
    }
    let Some(connected) = client.as_mut() else {
        return;
    };
    match read_grid(connected).await {
        Ok((workers, jobs, alerts)) => {
            view.workers = workers;
            view.jobs = jobs;
            view.alerts = alerts;
            view.error = None;
            view.updated = Some(crate::time::unix_now());
        }
        Err(err) => {
            view.error = Some(err.to_string());
            *client = None;
        }
    }
}

type Grid = (Vec<WorkerView>, Vec<JobView>, Vec<Alert>);

async fn read_grid(client: &mut MasterClient) -> Result<Grid, ClientError> {
    let mut workers = match client.request(&Message::ListWorkers).await? {
        Message::Workers { workers } => workers,
        other => return Err(unexpected(&other)),
    };
    workers.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
    let jobs = match client.request(&Message::ListJobs).await? {
        Message::Jobs { jobs, .. } => jobs,
        other => return Err(unexpected(&other)),
    };
    let alerts = match client
        .request(&Message::ListAlerts { limit: ALERTS })
        .await?
    {
        Message::Alerts { alerts } => alerts,
        other => return Err(unexpected(&other)),
    };
    Ok((workers, jobs, alerts))
}

fn draw(frame: &mut Frame, address: &str, view: &View) {
    let workers_height = view.workers.len().max(1) as u16 + 3;
    let alerts_height = view.alerts.len().max(1) as u16 + 3;
    let [header, workers, jobs, alerts] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(workers_height),
        Constraint::Min(4),
        Constraint::Length(alerts_height),
    ])
    .areas(frame.area());
    frame.render_widget(header_line(address, view), header);
    frame.render_widget(workers_table(&view.workers), workers);
    frame.render_widget(jobs_table(&view.jobs), jobs);
    frame.render_widget(alerts_table(&view.alerts), alerts);
}

fn header_line(address: &str, view: &View) -> Paragraph<'static> {
    let active = view
        .workers
        .iter()
        .filter(|w| w.state != LivenessState::Inactive)
        .count();
    let running = view.jobs.iter().filter(|j| !j.status.is_finished()).count();
    let mut text = format!(
        "gridwatch top  master {address}  workers {active} active / {}  jobs {running} running / {}",
        view.workers.len(),
        view.jobs.len()
    );
    if let Some(updated) = view.updated {
        text.push_str(&format!("  updated {} UTC", &format_utc(updated)[11..]));
    }
    let style = match &view.error {
        Some(error) => {
            text.push_str(&format!("  ERROR: {error}"));
            Style::default().fg(Color::Red)
        }
        None => Style::default().add_modifier(Modifier::BOLD),
    };
    text.push_str("  (q quits)");
    Paragraph::new(Line::styled(text, style))
}

/// A single dimmed row saying a table is empty.
fn empty_row(text: &'static str) -> Row<'static> {
    Row::new(vec![Cell::from(text)]).style(Style::default().fg(Color::DarkGray))
}

fn bold_header(cells: &[&'static str]) -> Row<'static> {
    Row::new(cells.to_vec()).style(Style::default().add_modifier(Modifier::BOLD))
}

fn or_dash(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

fn workers_table(workers: &[WorkerView]) -> Table<'static> {
    let mut rows: Vec<Row> = workers
        .iter()
        .map(|w| {
            let (state, color) = match w.state {
                LivenessState::Active => ("active", Color::Green),
                LivenessState::Unstable => ("unstable", Color::Yellow),
                LivenessState::Inactive => ("inactive", Color::Red),
                LivenessState::NoAgent => ("no agent", Color::Magenta),
            };
            // A worker no agent watches has no figures: dashes, not zeros.
            let report = (w.state != LivenessState::NoAgent).then_some(&w.latest);
            let figure = |value: Option<f64>| or_dash(value, 1);
            Row::new(vec![
                Cell::from(w.worker_id.clone()),
                Cell::from(state).style(Style::default().fg(color)),
                Cell::from(report.map_or("-", |r| r.status.as_str())),
                Cell::from(report.map_or("-".into(), |_| w.tasks_done.to_string())),
                Cell::from(figure(report.and_then(|r| r.process_cpu_percent))),
                Cell::from(figure(report.and_then(|r| r.process_rss_mb))),
                Cell::from(figure(report.map(|r| r.cpu_percent))),
                Cell::from(figure(report.map(|r| r.memory_percent))),
                Cell::from(w.current_task.clone().unwrap_or_default()),
            ])
        })
        .collect();
    if rows.is_empty() {
        rows.push(empty_row("none yet"));
    }
    let widths = [
        Constraint::Length(14),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Min(10),
    ];
    Table::new(rows, widths)
        .header(bold_header(&[
            "WORKER",
            "STATE",
            "STATUS",
            "TASKS",
            "PROC CPU%",
            "RSS MiB",
            "HOST CPU%",
            "HOST MEM%",
            "CURRENT TASK",
        ]))
        .block(Block::default().borders(Borders::ALL).title(" Workers "))
}

fn status_color(status: JobStatus) -> Color {
    match status {
        JobStatus::Completed => Color::Green,
        JobStatus::Failed => Color::Red,
        JobStatus::Cancelled => Color::DarkGray,
        _ => Color::Yellow,
    }
}

fn jobs_table(jobs: &[JobView]) -> Table<'static> {
    let mut rows: Vec<Row> = jobs
        .iter()
        .map(|job| {
            let percent = job.progress.percentage;
            let filled = ((percent / 10.0).round() as usize).min(10);
            let bar = format!(
                "[{}{}] {percent:>3.0}%",
                "#".repeat(filled),
                ".".repeat(10 - filled)
            );
            Row::new(vec![
                Cell::from(job.job_id.clone()),
                Cell::from(job.kind.clone()),
                Cell::from(job.status.as_str())
                    .style(Style::default().fg(status_color(job.status))),
                Cell::from(bar),
                Cell::from(format!(
                    "{}/{}",
                    job.progress.processed_chunks, job.progress.total_chunks
                )),
                Cell::from(super::query::counted(job)),
                Cell::from(job.error.clone().unwrap_or_default()),
            ])
        })
        .collect();
    if rows.is_empty() {
        rows.push(empty_row("no jobs"));
    }
    let widths = [
        Constraint::Length(36),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(18),
        Constraint::Length(11),
        Constraint::Length(20),
        Constraint::Min(10),
    ];
    Table::new(rows, widths)
        .header(bold_header(&[
            "JOB", "KIND", "STATUS", "PROGRESS", "CHUNKS", "COUNT", "ERROR",
        ]))
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Jobs (newest first) "),
        )
}

fn alerts_table(alerts: &[Alert]) -> Table<'static> {
    let mut rows: Vec<Row> = alerts
        .iter()
        .map(|a| {
            let state = match a.state {
                AlertState::Pending => "pending",
                AlertState::Firing => "firing",
                AlertState::Resolved => "resolved",
            };
            let color = match (a.state, a.severity) {
                (AlertState::Resolved, _) => Color::DarkGray,
                (_, Severity::Critical) => Color::Red,
                (_, Severity::Warning) => Color::Yellow,
            };
            Row::new(vec![
                Cell::from(format_utc(a.timestamp)[11..].to_string()),
                Cell::from(a.severity.as_str()).style(Style::default().fg(color)),
                Cell::from(state),
                Cell::from(a.worker_id.clone()),
                Cell::from(a.message.clone()),
            ])
        })
        .collect();
    if rows.is_empty() {
        rows.push(empty_row("none"));
    }
    let widths = [
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(14),
        Constraint::Min(10),
    ];
    Table::new(rows, widths)
        .header(bold_header(&[
            "TIME", "SEVERITY", "STATE", "WORKER", "MESSAGE",
        ]))
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Latest alerts "),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_seconds_and_milliseconds() {
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_interval("2"), Ok(Duration::from_secs(2)));
        assert!(parse_interval("soon").is_err());
        assert!(parse_interval("0s").is_err());
    }
}
