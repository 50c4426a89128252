//! `gridwatch logs JOB TASK`: one command task's stdout (or stderr), finished or running. A
//! running task shows what its worker has sent so far; `--follow` keeps printing what follows
//! until the task ends, then exits with the task's exit code (128 + the signal that ended it, 1
//! when it was killed without one), as a shell reports a command.

use std::io::Write;
use std::time::Duration;

use super::connect::{unexpected, ClientError, MasterAddr, MasterClient};
use gridwatch::backend::live_output::{TaskOutputState, TaskOutputView};
use gridwatch::protocol::Message;

/// How often `--follow` asks for new output: a worker sends its task's output twice a second.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// `gridwatch logs JOB TASK`.
#[derive(Clone, Debug, clap::Args)]
pub struct LogsArgs {
    /// The job id.
    pub job: String,
    /// The task: its array index or args-file line number.
    pub task: u64,
    /// Print the task's stderr instead of its stdout.
    #[arg(long)]
    pub stderr: bool,
    /// Keep printing the task's output as it comes until the task ends, then exit with its
    /// exit code. Without it a running task's output so far is printed.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Where the master is.
    #[command(flatten)]
    pub master: MasterAddr,
}

/// Prints a task's stdout or stderr: as stored once it finished, as sent so far while it runs.
pub async fn logs(args: LogsArgs) -> Result<(), ClientError> {
    let mut client = MasterClient::connect(&args.master).await?;
    let mut from = 0u64;
    loop {
        let view = ask(&mut client, &args, from).await?;
        if view.offset > from {
            // The live tail no longer holds what lay between; the stored result will.
            eprintln!(
                "[{} bytes not kept while the task runs; `logs` prints them once it has finished]",
                view.offset - from
            );
        }
        print(&view.text)?;
        from = view.offset + view.text.len() as u64;
        match view.state {
            TaskOutputState::Finished if from < view.end => continue,
            TaskOutputState::Finished if args.follow => return task_ending(&args, &view),
            TaskOutputState::Finished => return Ok(()),
            TaskOutputState::Ended => {
                return Err(ClientError::JobFailed(format!(
                    "job {} is {} and task {} has no result",
                    args.job, view.job_status, args.task
                )))
            }
            TaskOutputState::Running | TaskOutputState::Waiting if args.follow => {}
            TaskOutputState::Running => return Ok(()),
            TaskOutputState::Waiting => {
                return Err(ClientError::Usage(format!(
                    "task {} of job {} has not started or has printed nothing yet (the job is \
                     {}); --follow waits for it",
                    args.task, args.job, view.job_status
                )))
            }
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

async fn ask(
    client: &mut MasterClient,
    args: &LogsArgs,
    from: u64,
) -> Result<TaskOutputView, ClientError> {
    let message = Message::TaskOutput {
        job_id: args.job.clone(),
        task: args.task,
        stderr: args.stderr,
        from,
    };
    match client.request(&message).await? {
        Message::TaskOutputText { output } => Ok(output),
        other => Err(unexpected(&other)),
    }
}

fn print(text: &str) -> Result<(), ClientError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Success when the task exited 0; otherwise its exit status as this command's.
fn task_ending(args: &LogsArgs, view: &TaskOutputView) -> Result<(), ClientError> {
    let code = match (view.exit_code, view.signal) {
        (Some(0), _) if view.ending.as_deref() == Some("0") => return Ok(()),
        (Some(code), _) if code != 0 => code,
        (_, Some(signal)) => 128 + signal,
        _ => 1,
    };
    Err(ClientError::TaskEnded {
        message: format!(
            "task {} of job {} ended {}",
            args.task,
            args.job,
            view.ending.as_deref().unwrap_or("?")
        ),
        code,
    })
}
