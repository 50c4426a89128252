//! Shell completions, `--help` examples and the manual pages come from the same command
//! definitions: the bash script completes every subcommand, zsh and fish scripts are produced,
//! every command's help ends with examples that parse, and every command has a man page with
//! EXAMPLES, ENVIRONMENT, FILES and EXIT STATUS that renders with man(1).

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::procs::gridwatch;

fn stdout_of(args: &[&str]) -> String {
    let out = gridwatch().args(args).output().expect("run gridwatch");
    assert!(
        out.status.success(),
        "gridwatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

const SUBCOMMANDS: &[&str] = &[
    "master",
    "worker",
    "submit",
    "status",
    "results",
    "jobs",
    "workers",
    "alerts",
    "up",
    "top",
    "completions",
    "man",
];

#[test]
fn bash_completion_offers_every_subcommand_and_the_forget_flag() {
    let script = stdout_of(&["completions", "bash"]);
    assert!(
        script.contains("complete -F _gridwatch"),
        "a bash completion function"
    );
    for name in SUBCOMMANDS {
        assert!(script.contains(name), "bash completion names {name}");
    }
    assert!(
        script.contains("--forget"),
        "gridwatch workers --forget completes"
    );
    // bash itself accepts the script and completes `gridwatch wor` to `worker workers`.
    let Ok(mut bash) = Command::new("bash")
        .args(["--norc", "--noprofile", "-s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    else {
        return;
    };
    let probe = format!(
        "{script}\nCOMP_WORDS=(gridwatch wor); COMP_CWORD=1; COMP_LINE='gridwatch wor'; COMP_POINT=13\n\
         _gridwatch gridwatch wor gridwatch\necho \"${{COMPREPLY[@]}}\"\n"
    );
    bash.stdin
        .take()
        .expect("stdin")
        .write_all(probe.as_bytes())
        .expect("feed bash");
    let out = bash.wait_with_output().expect("bash runs");
    let offered = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = offered.split_whitespace().collect();
    assert!(
        words.contains(&"worker") && words.contains(&"workers"),
        "completions of `wor`: {offered}"
    );
}

#[test]
fn zsh_and_fish_completions_are_generated() {
    assert!(stdout_of(&["completions", "zsh"]).contains("#compdef gridwatch"));
    let fish = stdout_of(&["completions", "fish"]);
    assert!(fish.contains("complete -c gridwatch"), "{fish}");
    let out = gridwatch()
        .args(["completions", "tcsh"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn the_man_page_renders_and_lists_the_subcommands() {
    let page = stdout_of(&["man"]);
    assert!(page.contains(".TH gridwatch 1"), "a roff man page: {page}");
    let rendered = Command::new("man")
        .args(["-l", "-"])
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut man) = rendered else {
        eprintln!("SKIPPING rendering: man(1) is not installed; checked the roff source only");
        for name in SUBCOMMANDS {
            assert!(page.contains(name), "man page names {name}");
        }
        return;
    };
    man.stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("feed man");
    let out = man.wait_with_output().expect("man runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "man -l: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("NAME") && text.contains("SYNOPSIS"), "{text}");
    assert!(text.contains("distributed compute grid"), "{text}");
    for name in SUBCOMMANDS {
        assert!(text.contains(name), "rendered page names {name}: {text}");
    }
    assert!(!text.contains(".TH"), "roff was interpreted, not printed");
}

/// The subcommands a `--help` lists under `Commands:` (without `help`).
fn listed_subcommands(help: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        if line == "Commands:" {
            in_commands = true;
            continue;
        }
        if in_commands {
            // Entries are indented by two spaces; a wrapped description by more.
            let Some(entry) = line.strip_prefix("  ") else {
                break;
            };
            if entry.starts_with(' ') {
                continue;
            }
            match entry.split_whitespace().next() {
                Some("help") | None => {}
                Some(name) => names.push(name.to_string()),
            }
        }
    }
    names
}

/// Every command path in the tree, found by reading each command's `--help` (`[]` is the
/// program itself, `["submit", "search"]` a nested one).
fn command_tree() -> Vec<Vec<String>> {
    let mut found = vec![Vec::new()];
    let mut next = 0;
    while next < found.len() {
        let path = found[next].clone();
        next += 1;
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        for name in listed_subcommands(&stdout_of(&args)) {
            let mut child = path.clone();
            child.push(name);
            found.push(child);
        }
    }
    found
}

/// The command lines under a help's `Examples:` heading, which must end the help.
fn examples_of(help: &str) -> Vec<String> {
    let Some((_, section)) = help.split_once("\nExamples:\n") else {
        return Vec::new();
    };
    section
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_command_help_ends_with_examples_that_parse() {
    let tree = command_tree();
    assert!(
        tree.len() > 25,
        "the walk found the commands and the nested ones: {tree:?}"
    );
    assert!(tree.contains(&vec!["submit".to_string(), "search".to_string()]));
    assert!(tree.contains(&vec!["genomes".to_string(), "rm".to_string()]));
    for path in &tree {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = stdout_of(&args);
        let examples = examples_of(&help);
        assert!(
            (1..=3).contains(&examples.len()),
            "`gridwatch {}` help ends with 1-3 examples: {help}",
            path.join(" ")
        );
        for example in examples {
            // The gridwatch part of a shell line: after a `|`, before a `|` or `>`.
            let start = example.find("gridwatch ").unwrap_or(usize::MAX);
            assert_ne!(start, usize::MAX, "an example runs gridwatch: {example}");
            let own = example[start..]
                .split(['|', '>'])
                .next()
                .unwrap_or_default();
            let words: Vec<&str> = own.split_whitespace().skip(1).collect();
            assert!(
                tree.contains(&vec![words[0].to_string()]),
                "example names a command that exists: {example}"
            );
            assert!(
                words.starts_with(&path.iter().map(String::as_str).collect::<Vec<_>>()),
                "`gridwatch {}` shows its own use: {example}",
                path.join(" ")
            );
            // clap checks every flag and value up to `--help`: an example with a flag that does
            // not exist, or a value it refuses, fails here.
            // Words after `--` are a program's own arguments, never flags: `--help` goes before.
            let mut checked: Vec<&str> = words.iter().copied().take_while(|w| *w != "--").collect();
            checked.push("--help");
            let out = gridwatch().args(&checked).output().expect("run gridwatch");
            assert!(
                out.status.success(),
                "example does not parse: {example}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Renders a roff page with man(1) as plain text, or None without man.
fn render_man(page: &str) -> Option<String> {
    let mut man = Command::new("man")
        .args(["-l", "-"])
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    man.stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("feed man");
    let out = man.wait_with_output().expect("man runs");
    assert!(
        out.status.success(),
        "man -l: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

const SECTIONS: [&str; 4] = ["EXAMPLES", "ENVIRONMENT", "FILES", "EXIT STATUS"];

/// Whether a roff page has the section heading (quoted when it has a space).
fn has_section(page: &str, name: &str) -> bool {
    page.lines()
        .any(|line| line == format!(".SH {name}") || line == format!(".SH \"{name}\""))
}

#[test]
fn man_submit_shows_a_page_with_examples_environment_files_and_exit_status() {
    let page = stdout_of(&["man", "submit"]);
    assert!(page.contains(".TH gridwatch-submit 1"), "{page}");
    for section in SECTIONS {
        assert!(has_section(&page, section), "{section}: {page}");
    }
    let Some(text) = render_man(&page) else {
        crate::support::skip_without("man(1) is not installed; checked the roff source only");
        return;
    };
    for section in SECTIONS {
        assert!(text.contains(section), "rendered {section}: {text}");
    }
    assert!(
        text.contains("gridwatch submit genome.fa -p AGGTCCAT --wait"),
        "{text}"
    );
    // The environment comes from the flags' fallbacks: submit reads the master's address.
    assert!(text.contains("GRIDWATCH_MASTER"), "{text}");
    assert!(text.contains("genome-hashes.json"), "{text}");

    let nested = stdout_of(&["man", "genomes", "rm"]);
    assert!(nested.contains(".TH gridwatch-genomes-rm 1"), "{nested}");
    let out = gridwatch().args(["man", "nosuch"]).output().expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown command is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
}

#[test]
fn man_out_writes_one_page_per_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let man_dir = dir.path().join("man");
    stdout_of(&["man", "--out", man_dir.to_str().expect("utf-8")]);
    let mut written: Vec<String> = std::fs::read_dir(&man_dir)
        .expect("the directory was made")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    written.sort();
    let mut expected: Vec<String> = command_tree()
        .iter()
        .map(|path| {
            let mut name = vec!["gridwatch".to_string()];
            name.extend(path.iter().cloned());
            format!("{}.1", name.join("-"))
        })
        .collect();
    expected.sort();
    assert_eq!(written, expected);
    for file in &written {
        let page = std::fs::read_to_string(man_dir.join(file)).expect("read page");
        for section in SECTIONS {
            assert!(has_section(&page, section), "{file}: {section}");
        }
    }
}
