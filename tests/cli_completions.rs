//! Shell completions and the manual page come from the same command definitions as `--help`:
//! the bash script completes every subcommand, zsh and fish scripts are produced, and the man page
//! renders with man(1) and names the subcommands.

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
