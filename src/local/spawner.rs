//! Starting one worker of a local grid with its agent: their command lines, sockets and logs,
//! shared by `up`'s start and its autoscaler.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::client::connect::ClientError;

use super::supervise::Supervised;

/// What starting one more worker, with its agent, takes.
pub(crate) struct Spawner {
    pub(super) exe: PathBuf,
    pub(super) log_dir: PathBuf,
    pub(super) socket_dir: PathBuf,
    pub(super) master_addr: String,
    pub(super) collector_port: String,
    pub(super) threads: usize,
    pub(super) backend: Vec<String>,
    /// Whether workers run command tasks (`up --allow-commands`).
    pub(super) allow_commands: bool,
    /// The embedded master's stored genomes, which workers on its host read themselves.
    pub(super) genome_dir: Option<PathBuf>,
}

impl Spawner {
    /// The agent socket of worker `id`.
    pub(super) fn socket(&self, id: &str) -> PathBuf {
        self.socket_dir.join(format!("{id}.sock"))
    }

    /// Where `up` writes why it stops worker `id` (read by the worker as it leaves).
    pub(super) fn leave_reason_file(&self, id: &str) -> PathBuf {
        self.socket_dir.join(format!("{id}.leaving"))
    }

    /// Starts the agent of worker `id`.
    pub(super) fn agent(&self, id: &str) -> Result<Supervised, ClientError> {
        let agent_args = os_args(["agent", "--worker-id", id, "--socket"])
            .chain([self.socket(id).into_os_string()])
            .chain(os_args([
                "--collector-host",
                "127.0.0.1",
                "--collector-port",
                &self.collector_port,
            ]))
            .collect();
        let log = self.log_dir.join(format!("agent-{id}.log"));
        Supervised::start(format!("agent of {id}"), &self.exe, agent_args, log)
    }

    /// Starts worker `id` (its agent must listen already).
    pub(super) fn worker(&self, id: &str) -> Result<Supervised, ClientError> {
        let leave = self.leave_reason_file(id);
        let _ = std::fs::remove_file(&leave);
        let worker_args = os_args(["worker", "--id", id, "--master", &self.master_addr])
            .chain(os_args(["--agent-socket"]))
            .chain([self.socket(id).into_os_string()])
            .chain(os_args(["--leave-reason-file"]))
            .chain([leave.into_os_string()])
            .chain(os_args(["--threads", &self.threads.to_string()]))
            .chain(os_args(self.backend.iter().map(String::as_str)))
            .chain(os_args(self.allow_commands.then_some("--allow-commands")))
            .chain(
                self.genome_dir
                    .iter()
                    .flat_map(|dir| [OsString::from("--genome-dir"), dir.clone().into_os_string()]),
            )
            .collect();
        let log = self.log_dir.join(format!("{id}.log"));
        Supervised::start(format!("worker {id}"), &self.exe, worker_args, log)
    }
}

/// Command-line words as the arguments of a child process.
pub(super) fn os_args<'a>(
    args: impl IntoIterator<Item = &'a str>,
) -> impl Iterator<Item = OsString> {
    args.into_iter()
        .map(OsString::from)
        .collect::<Vec<_>>()
        .into_iter()
}
