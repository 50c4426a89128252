//! Examples for every command's `--help`, and the manual pages built from the same command tree.
//!
//! One table holds the examples: `--help` shows them after the options, and each command's man
//! page lists them under EXAMPLES beside ENVIRONMENT (read from the flags' `env` fallbacks, so it
//! cannot drift from the parser), FILES and EXIT STATUS.

use std::io::{self, Write};
use std::path::Path;

use clap::Command;
use roff::{bold, italic, roman, Roff};

/// Examples per command path (`"submit search"` is `gridwatch submit search`): the command line,
/// then what it does. Every command the parser knows has an entry; a test walks the tree.
const EXAMPLES: &[(&str, &[(&str, &str)])] = &[
    ("", &[
        ("gridwatch up", "start a master, a collector and two workers with agents on this machine"),
        ("gridwatch submit genome.fa -p GAATTC --wait", "search a genome on that grid and print the count"),
        ("gridwatch search genome.fa -p GAATTC --format tsv", "the same search on local cores, no grid"),
    ]),
    ("master", &[
        ("gridwatch master --listen 127.0.0.1:5000 --data-dir data", "a master keeping its jobs in ./data"),
        ("gridwatch master --listen 0.0.0.0:5000 --backend redis://127.0.0.1:6379/0", "a master on a Redis backend, reachable from other hosts"),
    ]),
    ("worker", &[
        ("gridwatch worker --id w1 --master 127.0.0.1:5000 --threads 2", "a worker using two cores"),
        ("gridwatch worker --id w2 --allow-command python3", "a worker that runs command tasks of python3 only"),
    ]),
    ("submit", &[
        ("gridwatch submit genome.fa -p AGGTCCAT --wait", "search for one pattern and wait for the count"),
        ("gridwatch submit genome.fa -p GAATTC --strand both --wait --format tsv", "every match on both strands, as TSV"),
        ("gridwatch submit julia --width 1000 --wait --format png --out julia.png", "render the Julia set into a PNG"),
    ]),
    ("submit search", &[
        ("gridwatch submit search genome.fa -p GATTACA --wait", "the explicit form of `submit genome.fa -p GATTACA`"),
        ("gridwatch submit search genome.fa --patterns sites.txt --priority high", "many patterns from a file, ahead of the queue"),
        ("gridwatch submit search genome.fa -p GATTACA --no-cache --wait", "run it even if an identical search finished before"),
    ]),
    ("submit julia", &[
        ("gridwatch submit julia --width 1000 --wait --json", "render 1000x1000 and print the figures as JSON"),
    ]),
    ("submit command", &[
        ("gridwatch submit command --array 1-100 --wait -- python3 sim.py --seed {i}", "run a program once per index on workers started with --allow-commands"),
        ("gridwatch submit command --args-file samples.tsv --timeout 10m --retries 1 -- ./align.sh {1} {2}", "one task per line, its tab-separated fields as arguments"),
        ("gridwatch submit command --array 1-40 --output 'out/*.csv' --memory 2GiB -- ./sim.sh {i}", "keep each task's CSV files; limit each process to 2 GiB"),
    ]),
    ("submit particles", &[
        ("gridwatch submit particles --particles 2000 --steps 1000 --seed 42 --replicas 8 --wait", "eight replicas, seeds 42 to 49"),
    ]),
    ("load", &[
        ("gridwatch load renders.csv --wait", "one Julia job per CSV line, waiting for all of them"),
    ]),
    ("purge", &[
        ("gridwatch purge", "cancel every queued job that has not started"),
        ("gridwatch purge --priority low", "only the low-priority ones"),
    ]),
    ("prune", &[
        ("gridwatch prune", "delete finished jobs now and print the space freed"),
    ]),
    ("genomes", &[
        ("gridwatch genomes", "list the stored genomes with their hashes"),
        ("gridwatch genomes rm 45d46da9", "delete one by a hash prefix"),
        ("gridwatch genomes export 45d46da9 > genome.2bit", "write one as a UCSC .2bit file"),
    ]),
    ("genomes rm", &[
        ("gridwatch genomes rm 45d46da9", "delete the genome whose hash starts with 45d46da9"),
    ]),
    ("genomes export", &[
        ("gridwatch genomes export 45d46da9 > genome.2bit", "write a stored genome as a UCSC .2bit file"),
        ("gridwatch genomes export 45d46da9 --out genome.2bit", "the same, into a file"),
    ]),
    ("status", &[
        ("gridwatch status JOB", "a job's state and progress"),
        ("gridwatch status JOB --json", "the same as JSON"),
    ]),
    ("results", &[
        ("gridwatch results JOB --format tsv", "a search job's matches as TSV"),
        ("gridwatch results JOB --format png --out julia.png", "a Julia job's image"),
        ("gridwatch results JOB --out outputs", "a command job's stdout and stderr, as outputs/TASK/stdout and outputs/TASK/stderr"),
    ]),
    ("logs", &[
        ("gridwatch logs JOB 7", "task 7's stdout, as stored"),
        ("gridwatch logs JOB 7 --stderr", "its stderr"),
    ]),
    ("cancel", &[
        ("gridwatch cancel JOB", "stop a job; its running tasks stop too"),
    ]),
    ("jobs", &[
        ("gridwatch jobs", "every job, newest first"),
        ("gridwatch jobs --status pending --kind julia", "only the Julia jobs still waiting"),
    ]),
    ("up", &[
        ("gridwatch up", "a master, a collector and two workers with agents; Ctrl-C stops them"),
        ("gridwatch up --workers 3 --data-dir data", "three workers, jobs kept in ./data"),
    ]),
    ("demo", &[
        ("gridwatch demo", "search a generated 200 MiB genome on a local grid and check it locally"),
        ("gridwatch demo --size 20MiB --kill-worker", "a smaller genome, killing a worker halfway"),
    ]),
    ("agent", &[
        ("gridwatch agent --worker-id w1", "the agent of worker w1, reporting to the local collector"),
    ]),
    ("collector", &[
        ("gridwatch collector --master 127.0.0.1:5000", "collect agents' reports and tell that master of dead workers"),
    ]),
    ("workers", &[
        ("gridwatch workers", "every worker's liveness"),
        ("gridwatch workers --performance", "tasks done and time per task"),
        ("gridwatch workers --forget w3", "drop a worker that is gone for good"),
    ]),
    ("alerts", &[
        ("gridwatch alerts --limit 20", "the 20 most recent alerts"),
    ]),
    ("health", &[
        ("gridwatch health --master 127.0.0.1:5000", "exit 0 when the master answers, 1 when not"),
    ]),
    ("search", &[
        ("gridwatch search genome.fa -p GAATTC --strand both --format tsv", "every EcoRI site on both strands"),
        ("zcat reads.fa.gz | gridwatch search - -p GATTACA -m 1", "standard input, up to one mismatch"),
        ("gridwatch search chr1.fa chr2.fa --patterns sites.txt -j 4 --format bed", "two files, a patterns file, four threads"),
    ]),
    ("julia", &[
        ("gridwatch julia --width 1000 --format png --out julia.png", "render the classic set on all local cores"),
    ]),
    ("particles", &[
        ("gridwatch particles --particles 2000 --steps 1000 --seed 42 --replicas 8", "eight replicas on local cores"),
    ]),
    ("generate", &[
        ("gridwatch generate --size 100MiB --out genome.fa", "a deterministic random genome"),
        ("gridwatch generate --size 1MiB --records 3 --plant GAATTC:5 --out small.fa", "three records with five planted sites"),
    ]),
    ("bench", &[
        ("gridwatch bench search", "local search against grep and ripgrep"),
        ("gridwatch bench grid", "a job end to end on a local grid"),
    ]),
    ("bench search", &[
        ("gridwatch bench search --size 50MiB --runs 1", "a quick run on a smaller genome"),
        ("gridwatch bench search --mismatches", "search with mismatches against seqkit"),
    ]),
    ("bench grid", &[
        ("gridwatch bench grid", "a job end to end on a local grid against grep and ripgrep"),
    ]),
    ("bench julia", &[
        ("gridwatch bench julia", "the Julia kind on the grid, locally and in Python"),
    ]),
    ("bench particles", &[
        ("gridwatch bench particles", "the particles kind on the grid, locally and in Python"),
    ]),
    ("bench commands", &[
        ("gridwatch bench commands", "10,000 `true` tasks and 40 simulations on the grid against GNU parallel"),
        ("gridwatch bench commands --tasks 1000 --seeds 8 --runs 1", "a quicker run"),
    ]),
    ("top", &[
        ("gridwatch top", "the live view; arrows select a job, c cancels it, q quits"),
        ("gridwatch top --interval 5s", "refresh every five seconds"),
    ]),
    ("completions", &[
        ("gridwatch completions bash > /etc/bash_completion.d/gridwatch", "completion for bash"),
    ]),
    ("man", &[
        ("gridwatch man submit | man -l -", "read the page of `submit`"),
        ("gridwatch man --out man", "write every page into ./man"),
    ]),
];

/// Files a command reads or writes, by command path; the pages of other commands say none.
const FILES: &[(&str, &[(&str, &str)])] = &[
    (
        "master",
        &[
            (
                "DATA_DIR/gridwatch.db",
                "jobs, tasks, results and stored genomes (embedded backend)",
            ),
            (
                "DATA_DIR/master.lock",
                "held while a master uses the directory; a second master exits 2",
            ),
        ],
    ),
    (
        "up",
        &[
            (
                "DATA_DIR/master.addr, DATA_DIR/http.addr, DATA_DIR/collector.addr",
                "the addresses the grid listens on, for clients on this machine",
            ),
            (
                "DATA_DIR/",
                "the master's database and lock, and every process's log",
            ),
        ],
    ),
    ("submit", GENOME_CACHE),
    ("submit search", GENOME_CACHE),
    ("agent", AGENT_SOCKET),
    ("worker", AGENT_SOCKET),
];

const GENOME_CACHE: &[(&str, &str)] = &[(
    "~/.cache/gridwatch/genome-hashes.json",
    "hashes of genomes already uploaded, so a resubmit sends nothing ($XDG_CACHE_HOME when set)",
)];

const AGENT_SOCKET: &[(&str, &str)] = &[(
    "$XDG_RUNTIME_DIR/gridwatch/ID.sock",
    "the Unix socket a worker and its agent talk over (/tmp/gridwatch-UID/ID.sock without XDG_RUNTIME_DIR)",
)];

/// The parser's command tree with each command's examples after its help.
pub fn with_examples(command: Command) -> Command {
    decorate(command, "")
}

fn decorate(command: Command, path: &str) -> Command {
    let mut command = match examples(path) {
        Some(examples) => command.after_help(help_text(examples)),
        None => command,
    };
    let names: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_string())
        .collect();
    for name in names {
        let sub_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path} {name}")
        };
        command = command.mut_subcommand(&name, |sub| decorate(sub, &sub_path));
    }
    command
}

fn examples(path: &str) -> Option<&'static [(&'static str, &'static str)]> {
    EXAMPLES
        .iter()
        .find(|(name, _)| *name == path)
        .map(|(_, examples)| *examples)
}

fn help_text(examples: &[(&str, &str)]) -> String {
    let mut text = String::from("Examples:\n");
    for (line, what) in examples {
        text.push_str(&format!("  # {what}\n  {line}\n"));
    }
    text.trim_end().to_string()
}

/// Why a manual page could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ManError {
    /// The named command does not exist.
    #[error("no command `{0}`: `gridwatch --help` lists them")]
    NoSuchCommand(String),
    /// Writing the page failed.
    #[error("cannot write the manual page {0}: {1}")]
    Write(String, #[source] io::Error),
}

impl ManError {
    /// 2 for a wrong command name (the user can fix it), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            ManError::NoSuchCommand(_) => 2,
            ManError::Write(..) => 1,
        }
    }

    /// Whether the page's reader went away (`gridwatch man | head`).
    pub fn stdout_closed(&self) -> bool {
        matches!(self, ManError::Write(_, err) if err.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// Writes the page of the command at `path` (empty: the whole program) to stdout.
pub fn print_page(root: Command, path: &[String]) -> Result<(), ManError> {
    let mut root = root.disable_help_subcommand(true);
    root.build();
    let mut command = &root;
    for name in path {
        command = command
            .get_subcommands()
            .find(|sub| sub.get_name() == name)
            .ok_or_else(|| ManError::NoSuchCommand(path.join(" ")))?;
    }
    let page = render(command, &path.join(" ")).map_err(|e| ManError::Write("".into(), e))?;
    io::stdout()
        .write_all(&page)
        .map_err(|e| ManError::Write("to stdout".into(), e))
}

/// Writes one page per command into `dir` (made if missing): `gridwatch.1`, `gridwatch-submit.1`,
/// `gridwatch-submit-search.1`, …; prints each file written.
pub fn write_pages(root: Command, dir: &Path) -> Result<(), ManError> {
    let shown = dir.display().to_string();
    std::fs::create_dir_all(dir).map_err(|e| ManError::Write(shown.clone(), e))?;
    let mut root = root.disable_help_subcommand(true);
    root.build();
    write_tree(&root, "", dir)
}

fn write_tree(command: &Command, path: &str, dir: &Path) -> Result<(), ManError> {
    let file = dir.join(format!(
        "{}.1",
        command.get_display_name().unwrap_or(command.get_name())
    ));
    let shown = file.display().to_string();
    let page = render(command, path).map_err(|e| ManError::Write(shown.clone(), e))?;
    std::fs::write(&file, page).map_err(|e| ManError::Write(shown.clone(), e))?;
    println!("{shown}");
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        let sub_path = if path.is_empty() {
            sub.get_name().to_string()
        } else {
            format!("{path} {}", sub.get_name())
        };
        write_tree(sub, &sub_path, dir)?;
    }
    Ok(())
}

/// One page: clap_mangen's NAME, SYNOPSIS, DESCRIPTION, OPTIONS and SUBCOMMANDS, then EXAMPLES,
/// ENVIRONMENT, FILES and EXIT STATUS. The help's examples are not repeated as a loose section.
fn render(command: &Command, path: &str) -> io::Result<Vec<u8>> {
    let bare = command.clone().after_help("");
    let man = clap_mangen::Man::new(bare);
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if command.get_arguments().any(|arg| !arg.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if command.has_subcommands() {
        man.render_subcommands_section(&mut page)?;
    }
    page.extend_from_slice(own_sections(command, path).render().as_bytes());
    Ok(without_repeated_preamble(&page))
}

/// Each section rendered on its own repeats roff's two-line preamble; one is enough.
fn without_repeated_preamble(page: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(page);
    let mut seen = std::collections::HashSet::new();
    let mut kept = String::with_capacity(text.len());
    for line in text.lines() {
        let preamble = line.starts_with(".ie \\n(.g") || line.starts_with(".el .ds Aq");
        if !preamble || seen.insert(line.to_string()) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept.into_bytes()
}

fn own_sections(command: &Command, path: &str) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["EXAMPLES"]);
    for (line, what) in examples(path).unwrap_or_default() {
        roff.control("TP", []);
        roff.text([bold(*line)]);
        roff.text([roman(*what)]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    let mut variables: Vec<(String, String)> = command
        .get_arguments()
        .filter(|arg| !arg.is_hide_set())
        .filter_map(|arg| {
            let name = arg.get_env()?.to_string_lossy().into_owned();
            let flag = arg
                .get_long()
                .map_or_else(String::new, |long| format!("--{long}"));
            Some((name, flag))
        })
        .collect();
    variables.sort();
    variables.dedup();
    for (name, flag) in &variables {
        roff.control("TP", []);
        roff.text([bold(name.as_str())]);
        roff.text([roman("The default of "), bold(flag.as_str()), roman(".")]);
    }
    roff.control("TP", []);
    roff.text([bold("LOG_LEVEL"), roman(", "), bold("RUST_LOG")]);
    roff.text([roman(
        "Which log lines are written (error, warn, info, debug, trace; default info).",
    )]);
    if variables.is_empty() {
        roff.text([roman("No flag of this command reads the environment.")]);
    }
    roff.control("SH", ["FILES"]);
    let files = FILES
        .iter()
        .find(|(name, _)| *name == path)
        .map(|(_, files)| *files)
        .unwrap_or_default();
    if files.is_empty() {
        roff.text([roman(
            "None of its own: the files it reads or writes are the ones named on its command line.",
        )]);
    }
    for (file, what) in files {
        roff.control("TP", []);
        roff.text([italic(*file)]);
        roff.text([roman(*what)]);
    }
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in exit_status(path) {
        roff.control("TP", []);
        roff.text([bold(*code)]);
        roff.text([roman(*meaning)]);
    }
    roff
}

fn exit_status(path: &str) -> &'static [(&'static str, &'static str)] {
    match path {
        "health" => &[
            ("0", "The server answered the hello."),
            ("1", "It did not answer, or answered as something else."),
            ("2", "A usage error: a bad flag or address."),
        ],
        _ => &[
            ("0", "Success (also when the reader of the output went away, as with | head)."),
            ("1", "A failure the user cannot fix from the command line: a server down, a disk error, a failed job."),
            ("2", "An error the user can fix: a bad flag, a missing file, an unknown job, a refused input."),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_text_puts_each_example_under_its_description() {
        let text = help_text(&[("gridwatch a", "does a"), ("gridwatch b", "does b")]);
        assert_eq!(
            text,
            "Examples:\n  # does a\n  gridwatch a\n  # does b\n  gridwatch b"
        );
    }
}
