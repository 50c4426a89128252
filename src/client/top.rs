//! `gridwatch top`: a live terminal view of the grid (workers, jobs, latest alerts), redrawn in
//! place every `--interval`; `q` or Esc quits. It asks the master the same questions as
//! `gridwatch workers`, `jobs` and `alerts`, over one connection kept open between refreshes.
//! As in `celery events`, the arrow keys select a job and `c` cancels it once `y` confirms.
//! Below 120 columns the tables drop their least useful columns so ids are never cut.

use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::connect::{unexpected, ClientError, MasterAddr, MasterClient};
use super::monitor::format_utc;
use gridwatch::backend::JobStatus;
use gridwatch::protocol::{
    Alert, AlertState, JobView, LivenessState, Message, Severity, TaskUsage, WorkerView,
};

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

/// Narrower terminals than this get the short tables (80 columns is the classic minimum).
const WIDE_COLUMNS: u16 = 120;

/// The keys, always on the bottom line, before anything else is said there.
const KEYS_HINT: &str = "q quit  \u{2191}\u{2193} select  c cancel job";

/// What the keyboard has chosen: the selected job (by id, so a refresh that reorders the list
/// keeps it), a cancel waiting for `y`, and what the last cancel did.
#[derive(Default)]
struct Selection {
    job_id: Option<String>,
    confirming: Option<String>,
    notice: Option<(String, Color)>,
}

impl Selection {
    /// The selected job's row, falling back to the first job when it has gone.
    fn row(&self, jobs: &[JobView]) -> Option<usize> {
        if jobs.is_empty() {
            return None;
        }
        let found = self
            .job_id
            .as_ref()
            .and_then(|id| jobs.iter().position(|job| &job.job_id == id));
        Some(found.unwrap_or(0))
    }

    /// Moves the selection `step` rows (negative: up), staying inside the list.
    fn step(&mut self, jobs: &[JobView], step: isize) {
        let Some(row) = self.row(jobs) else { return };
        let last = jobs.len() - 1;
        let next = row.saturating_add_signed(step).min(last);
        self.job_id = Some(jobs[next].job_id.clone());
    }
}

/// What a key press asks for.
enum KeyAction {
    Quit,
    Redraw,
    /// The user confirmed cancelling this job.
    Cancel(String),
    Nothing,
}

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
    let mut selection = Selection::default();
    loop {
        refresh(args, client, &mut view).await;
        terminal.draw(|frame| draw(frame, &address, &view, &selection))?;
        let next = Instant::now() + args.interval;
        while let Some(left) = next.checked_duration_since(Instant::now()) {
            let slice = left.min(Duration::from_millis(50));
            if !tokio::task::block_in_place(|| event::poll(slice))? {
                continue;
            }
            let action = match tokio::task::block_in_place(event::read)? {
                Event::Key(key) if key.kind == KeyEventKind::Press => {
                    on_key(key.code, key.modifiers, &view.jobs, &mut selection)
                }
                Event::Resize(..) => KeyAction::Redraw,
                _ => KeyAction::Nothing,
            };
            match action {
                KeyAction::Quit => return Ok(()),
                KeyAction::Redraw => {}
                KeyAction::Nothing => continue,
                KeyAction::Cancel(job_id) => {
                    selection.notice = Some(cancel(client, &job_id).await);
                    // Show the job's new status now rather than at the next refresh.
                    break;
                }
            }
            terminal.draw(|frame| draw(frame, &address, &view, &selection))?;
        }
    }
}

/// Applies one key press to the selection; says what the loop must do.
fn on_key(
    code: KeyCode,
    modifiers: KeyModifiers,
    jobs: &[JobView],
    selection: &mut Selection,
) -> KeyAction {
    if code == KeyCode::Char('c') && modifiers.contains(KeyModifiers::CONTROL) {
        return KeyAction::Quit;
    }
    if let Some(job_id) = selection.confirming.take() {
        if matches!(code, KeyCode::Char('y') | KeyCode::Char('Y')) {
            return KeyAction::Cancel(job_id);
        }
        selection.notice = Some((format!("job {job_id} not cancelled"), Color::DarkGray));
        return KeyAction::Redraw;
    }
    match code {
        KeyCode::Char('q') | KeyCode::Esc => KeyAction::Quit,
        KeyCode::Up | KeyCode::Char('k') => {
            selection.step(jobs, -1);
            KeyAction::Redraw
        }
        KeyCode::Down | KeyCode::Char('j') => {
            selection.step(jobs, 1);
            KeyAction::Redraw
        }
        KeyCode::Char('c') => {
            let Some(job) = selection.row(jobs).map(|row| &jobs[row]) else {
                selection.notice = Some(("no job to cancel".into(), Color::DarkGray));
                return KeyAction::Redraw;
            };
            if job.status.is_finished() {
                selection.notice = Some((
                    format!("job {} is already {}", job.job_id, job.status.as_str()),
                    Color::DarkGray,
                ));
            } else {
                selection.job_id = Some(job.job_id.clone());
                selection.confirming = Some(job.job_id.clone());
                selection.notice = None;
            }
            KeyAction::Redraw
        }
        _ => KeyAction::Nothing,
    }
}

/// Asks the master to cancel a job; returns the line to show and its colour.
async fn cancel(client: &mut Option<MasterClient>, job_id: &str) -> (String, Color) {
    let Some(connected) = client.as_mut() else {
        return (
            format!("job {job_id} not cancelled: not connected to the master"),
            Color::Red,
        );
    };
    let message = Message::Cancel {
        job_id: job_id.to_string(),
    };
    match connected.request(&message).await {
        Ok(Message::Cancelled { removed_tasks, .. }) => (
            format!(
                "cancelled job {job_id} ({})",
                super::count_of(removed_tasks.into(), "queued task")
            ),
            Color::Green,
        ),
        Ok(other) => (
            format!("job {job_id} not cancelled: {}", unexpected(&other)),
            Color::Red,
        ),
        Err(err) => (format!("job {job_id} not cancelled: {err}"), Color::Red),
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
            view.updated = Some(gridwatch::time::unix_now());
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

fn draw(frame: &mut Frame, address: &str, view: &View, selection: &Selection) {
    // A row per worker and one under it per task it runs.
    let worker_rows: usize = view.workers.iter().map(|w| 1 + running(w).len()).sum();
    let workers_height = worker_rows.max(1) as u16 + 3;
    let alerts_height = view.alerts.len().max(1) as u16 + 3;
    let [header, workers, jobs, alerts, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(workers_height),
        Constraint::Min(4),
        Constraint::Length(alerts_height),
        Constraint::Length(2),
    ])
    .areas(frame.area());
    let narrow = frame.area().width < WIDE_COLUMNS;
    frame.render_widget(header_line(address, view), header);
    frame.render_widget(workers_table(&view.workers, narrow), workers);
    let mut state = TableState::default().with_selected(selection.row(&view.jobs));
    frame.render_stateful_widget(jobs_table(&view.jobs, narrow), jobs, &mut state);
    frame.render_widget(alerts_table(&view.alerts), alerts);
    frame.render_widget(footer_line(selection), footer);
}

/// The cancel question or what the last cancel did, then the keys on a line of their own, so
/// neither pushes the other off an 80-column screen.
fn footer_line(selection: &Selection) -> Paragraph<'static> {
    let hint = Span::styled(KEYS_HINT, Style::default().add_modifier(Modifier::BOLD));
    let said = match (&selection.confirming, &selection.notice) {
        (Some(job_id), _) => Span::styled(
            format!("cancel job {job_id}? y: yes, any other key: no"),
            Style::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        ),
        (None, Some((notice, color))) => Span::styled(notice.clone(), Style::default().fg(*color)),
        (None, None) => Span::raw(""),
    };
    Paragraph::new(vec![Line::from(said), Line::from(hint)])
}

/// Keeps the cells of `columns`, in that order.
fn pick<T: Clone>(cells: &[T], columns: &[usize]) -> Vec<T> {
    columns
        .iter()
        .filter_map(|&column| cells.get(column).cloned())
        .collect()
}

/// Width of an id column: its longest id (or header), so no id is cut.
fn id_width<'a>(header: &str, ids: impl Iterator<Item = &'a str>) -> u16 {
    let longest = ids.map(|id| id.chars().count()).max().unwrap_or(0);
    // At least as wide as "none yet", the empty table's row.
    u16::try_from(longest.max(header.len()).max(8)).unwrap_or(u16::MAX)
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

/// Worker columns kept below [`WIDE_COLUMNS`]: the host memory and the process RSS go.
const NARROW_WORKER_COLUMNS: [usize; 7] = [0, 1, 2, 3, 4, 6, 8];

/// Worker columns kept at [`WIDE_COLUMNS`] and wider: all of them.
const WIDE_WORKER_COLUMNS: [usize; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 8];

/// The tasks a worker runs now as its agent reported them (none while it is not alive).
fn running(worker: &WorkerView) -> &[TaskUsage] {
    match worker.state {
        LivenessState::NoAgent | LivenessState::Inactive => &[],
        _ => &worker.latest.tasks,
    }
}

fn workers_table(workers: &[WorkerView], narrow: bool) -> Table<'static> {
    let columns: &[usize] = if narrow {
        &NARROW_WORKER_COLUMNS
    } else {
        &WIDE_WORKER_COLUMNS
    };
    let mut rows: Vec<Row> = Vec::new();
    for w in workers {
        let (state, color) = match w.state {
            LivenessState::Active => ("active", Color::Green),
            LivenessState::Unstable => ("unstable", Color::Yellow),
            LivenessState::Inactive => ("inactive", Color::Red),
            LivenessState::NoAgent => ("no agent", Color::Magenta),
        };
        // A worker no agent watches has no figures: dashes, not zeros.
        let report = (w.state != LivenessState::NoAgent).then_some(&w.latest);
        let figure = |value: Option<f64>| or_dash(value, 1);
        let tasks = running(w);
        // Agents that name every task list them in rows below; older ones name one.
        let task = match tasks.len() {
            0 => w.current_task.clone().unwrap_or_default(),
            1 => "1 running".to_string(),
            n => format!("{n} running"),
        };
        rows.push(Row::new(pick(
            &[
                Cell::from(w.worker_id.clone()),
                Cell::from(state).style(Style::default().fg(color)),
                Cell::from(report.map_or("-", |_| w.status_label())),
                Cell::from(report.map_or("-".into(), |_| w.tasks_done.to_string())),
                Cell::from(figure(report.and_then(|r| r.process_cpu_percent))),
                Cell::from(figure(report.and_then(|r| r.process_rss_mb))),
                Cell::from(figure(report.map(|r| r.cpu_percent))),
                Cell::from(figure(report.map(|r| r.memory_percent))),
                Cell::from(task),
            ],
            columns,
        )));
        // Each task's own CPU and memory (its process group's) under the worker's.
        for usage in tasks {
            let empty = || Cell::from("");
            rows.push(
                Row::new(pick(
                    &[
                        empty(),
                        empty(),
                        empty(),
                        empty(),
                        Cell::from(figure(usage.cpu_percent)),
                        Cell::from(figure(usage.rss_mb)),
                        empty(),
                        empty(),
                        Cell::from(format!("\u{2514} {}", usage.task)),
                    ],
                    columns,
                ))
                .style(Style::default().fg(Color::Cyan)),
            );
        }
    }
    if rows.is_empty() {
        rows.push(empty_row("none yet"));
    }
    let widths = [
        Constraint::Length(id_width(
            "WORKER",
            workers.iter().map(|w| w.worker_id.as_str()),
        )),
        Constraint::Length(9),
        // Room for `SCALED DOWN`, a worker an autoscaler stopped.
        Constraint::Length(11),
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Min(10),
    ];
    Table::new(rows, pick(&widths, columns))
        .header(bold_header(&pick(
            &[
                "WORKER",
                "STATE",
                "STATUS",
                "TASKS",
                "PROC CPU%",
                "RSS MiB",
                "HOST CPU%",
                "HOST MEM%",
                "RUNNING",
            ],
            columns,
        )))
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

/// Job columns kept below [`WIDE_COLUMNS`]: the percentage alone stands for the bar, and the
/// chunks and error columns go (`gridwatch status` has them).
const NARROW_JOB_COLUMNS: [usize; 5] = [0, 1, 2, 7, 5];

fn jobs_table(jobs: &[JobView], narrow: bool) -> Table<'static> {
    let columns: Vec<usize> = if narrow {
        NARROW_JOB_COLUMNS.to_vec()
    } else {
        (0..7).collect()
    };
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
            Row::new(pick(
                &[
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
                    Cell::from(format!("{percent:>3.0}%")),
                ],
                &columns,
            ))
        })
        .collect();
    if rows.is_empty() {
        rows.push(empty_row("no jobs"));
    }
    let widths = [
        Constraint::Length(id_width("JOB", jobs.iter().map(|job| job.job_id.as_str()))),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(18),
        Constraint::Length(11),
        // What is left, so a whole job id still fits beside it at 80 columns.
        Constraint::Min(12),
        Constraint::Min(10),
        Constraint::Length(4),
    ];
    Table::new(rows, pick(&widths, &columns))
        .header(bold_header(&pick(
            &[
                "JOB", "KIND", "STATUS", "PROGRESS", "CHUNKS", "COUNT", "ERROR", "DONE",
            ],
            &columns,
        )))
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Jobs (newest first) "),
        )
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ")
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
