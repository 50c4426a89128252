//! The dashboard as a person sees it, in headless Chromium at 1280 px against a live grid: both
//! workers listed, a job reaching 100 %, a long failed-job error that does not make the page
//! scroll sideways, a critical alert after a worker is killed with SIGKILL, a "forget" button that
//! removes the dead worker, and no console error at any point. A screenshot is saved in the
//! test's temp dir. A second grid checks what a newcomer reads closely: charts with axes and
//! units that show the past on load, one time zone, whole job ids, a job filter, result
//! downloads on the job page, an alerts table that never scrolls sideways, and seed ranges.
//! A third grid runs a command job with a failing task: its page shows each task's exit code
//! and, under the failure, the tail of its stderr. A fourth shows a command job while one of its
//! tasks still runs: the task among the running ones with its output so far, then, once it ends,
//! among the finished ones with its exit code.

use std::time::Duration;

use crate::support::procs::wait_for;
use crate::support::watchman_grid::{genome, WatchedGrid};
use crate::support::webdriver::{self, Browser};

/// Text of the table body `id` (rows separated by newlines, cells by tabs).
fn table(browser: &Browser, id: &str) -> String {
    let script = format!(
        "const body = document.getElementById({id:?}); \
         return Array.from(body.rows).map(r => Array.from(r.cells).map(c => c.innerText).join('\\t')).join('\\n');"
    );
    browser
        .eval(&script)
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The row of table `id` whose first cell is `first`, as text.
fn row(browser: &Browser, id: &str, first: &str) -> Option<String> {
    table(browser, id)
        .lines()
        .find(|line| line.split('\t').next() == Some(first))
        .map(str::to_string)
}

fn assert_no_console_errors(browser: &Browser, when: &str) {
    let errors: Vec<(String, String)> = browser
        .console()
        .into_iter()
        .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
        .collect();
    assert!(errors.is_empty(), "console errors {when}: {errors:#?}");
}

/// A failed job with an error as long and unbreakable as real ones get (a path, a dump), put in
/// the store as the master would have left it.
fn add_failed_job_with_a_long_error(grid: &WatchedGrid) -> String {
    let db = grid.dir.path().join("data").join("gridwatch.db");
    let conn = rusqlite::Connection::open(&db).expect("open the master's database");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    let error = format!(
        "reading /data/spool/{}/chunk-000017.bin failed: {}",
        "x".repeat(180),
        "unexpected-end-of-input-".repeat(12)
    );
    let now = crate::support::watchman_grid::unix_now();
    conn.execute(
        "INSERT INTO jobs (id, kind, spec, summary, priority, status, total_chunks, error, created_at, finished_at)
         VALUES ('failed-long-error', 'search', '{}', 'search for a pattern', 'medium', 'failed', 3, ?1, ?2, ?2)",
        rusqlite::params![error, now],
    )
    .expect("insert the failed job");
    error
}

#[test]
fn the_dashboard_shows_workers_a_job_to_100_percent_and_an_alert_without_errors_or_sideways_scroll()
{
    let Some((chromium, chromedriver)) = webdriver::installed() else {
        crate::support::skip_without("chromium and chromedriver are not installed");
        return;
    };
    let mut grid = WatchedGrid::start(&["w1", "w2"], "15s");
    let http = grid.http_addr();
    grid.wait_alive(2);
    let profile = grid.dir.path().join("chromium-profile");
    let browser = Browser::start(&chromium, &chromedriver, &profile, 1280, 900);
    browser.goto(&format!("http://{http}/"));
    let width = browser.eval("return window.innerWidth;").as_u64();
    assert_eq!(width, Some(1280), "the viewport is 1280 px wide");

    wait_for("both workers listed", Duration::from_secs(30), || {
        let w1 = row(&browser, "workers", "w1")?;
        let w2 = row(&browser, "workers", "w2")?;
        (w1.contains("active") && w2.contains("active")).then_some(())
    });

    let (genome_file, _) = genome(grid.dir.path(), 400_000);
    let job = grid.submit(&genome_file, "20000");
    let done = wait_for(
        "the job at 100 % on the page",
        Duration::from_secs(60),
        || {
            let line = row(&browser, "jobs", &job)?;
            (line.contains("100%") && line.contains("completed") && line.contains("20 / 20"))
                .then_some(line)
        },
    );
    assert!(done.contains("search"), "{done}");
    // Each kind's running total under its own name: a search job's are matches.
    let figures = browser.eval("return document.getElementById('s-figures').innerText;");
    let figures = figures.as_str().unwrap_or_default().to_string();
    assert!(
        figures.starts_with("matches ") && !figures.contains("iterations"),
        "{figures}"
    );
    assert!(
        done.contains(" matches"),
        "the job's count names its figure: {done}"
    );
    // The chart is drawn from the master's samples, taken every few seconds.
    wait_for(
        "the throughput chart drawn",
        Duration::from_secs(30),
        || {
            let drawn = browser
                .eval("return document.querySelector('#chart-throughput polyline') !== null;");
            (drawn == true).then_some(())
        },
    );

    let error = add_failed_job_with_a_long_error(&grid);
    wait_for("the failed job listed", Duration::from_secs(30), || {
        let line = row(&browser, "jobs", "failed-long-error")?;
        line.contains("failed").then_some(())
    });
    let shown = browser.text();
    assert!(
        shown.contains("unexpected-end-of-input-unexpected"),
        "the error is shown"
    );
    assert!(error.len() > 400);
    // Neither the page nor any panel of it scrolls sideways.
    let overflowing = browser.eval(
        "return [document.documentElement, ...document.querySelectorAll('section')] \
           .filter(e => e.scrollWidth > e.clientWidth + 1) \
           .map(e => (e.querySelector('h2') || e).innerText.split('\\n')[0] + ': ' + e.scrollWidth + ' > ' + e.clientWidth);",
    );
    assert_eq!(
        overflowing,
        serde_json::json!([]),
        "no horizontal scroll at 1280 px"
    );
    assert_no_console_errors(&browser, "after the job");

    grid.worker("w2").kill9();
    wait_for(
        "w2's critical alert on the page",
        Duration::from_secs(30),
        || {
            let alerts = table(&browser, "alerts");
            alerts
                .lines()
                .any(|l| l.contains("w2") && l.contains("critical") && l.contains("firing"))
                .then_some(())
        },
    );
    // Firing now, above the history, and counted in the header from the same answer.
    wait_for("w2's alert firing now", Duration::from_secs(30), || {
        let firing = table(&browser, "firing");
        let count = browser.eval("return document.getElementById('s-alerts').innerText;");
        (firing.contains("w2") && firing.contains("worker_dead") && count == "1").then_some(())
    });
    wait_for(
        "a forget button on dead w2",
        Duration::from_secs(30),
        || {
            let found = browser.eval(
            "const row = Array.from(document.querySelectorAll('#workers tr')).find(r => r.cells[0].innerText === 'w2'); \
             return !!(row && row.querySelector('button.forget'));",
        );
            (found == true).then_some(())
        },
    );
    let screenshot = grid.dir.path().join("dashboard.png");
    browser.screenshot(&screenshot);
    let png = std::fs::read(&screenshot).expect("screenshot saved");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    println!("dashboard screenshot: {}", screenshot.display());

    browser.eval(
        "Array.from(document.querySelectorAll('#workers tr')).find(r => r.cells[0].innerText === 'w2').querySelector('button.forget').click(); return true;",
    );
    wait_for("w2 gone from the page", Duration::from_secs(30), || {
        row(&browser, "workers", "w2").is_none().then_some(())
    });
    assert!(row(&browser, "workers", "w1").is_some(), "w1 stays");
    // Forgetting resolved w2's alert: the current state says so, and the header agrees.
    wait_for(
        "no alert firing on the page",
        Duration::from_secs(30),
        || {
            let firing = table(&browser, "firing");
            let count = browser.eval("return document.getElementById('s-alerts').innerText;");
            (firing.contains("No alert is firing") && count == "0").then_some(())
        },
    );
    assert_no_console_errors(&browser, "at the end");
    // Keep the directory (and the screenshot) when asked to look at it.
    if std::env::var_os("KEEP_SCREENSHOT").is_some() {
        let kept = grid.dir.path().to_path_buf();
        std::mem::forget(grid);
        println!("kept {}", kept.display());
    }
}

/// A resolved alert with a message as long as a stack trace, in the store's alert history.
fn add_long_alert(grid: &WatchedGrid) -> String {
    let db = grid.dir.path().join("data").join("gridwatch.db");
    let conn = rusqlite::Connection::open(&db).expect("open the master's database");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    let message = format!(
        "worker w9 reported {} while reading /var/lib/gridwatch/{}",
        "an-unbroken-diagnostic-token-".repeat(10),
        "y".repeat(150)
    );
    let now = crate::support::watchman_grid::unix_now();
    let alert = serde_json::json!({
        "id": "long-alert", "rule": "no_report", "severity": "warning", "worker_id": "w9",
        "state": "resolved", "message": message, "value": null,
        "active_since": now, "timestamp": now,
    });
    conn.execute(
        "INSERT INTO alerts (alert) VALUES (?1)",
        rusqlite::params![alert.to_string()],
    )
    .expect("insert the alert");
    message
}

/// Submits a job through the CLI and returns its id.
fn submit_json(grid: &WatchedGrid, args: &[&str]) -> String {
    let mut all = vec!["submit"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = grid.client(&all).expect("submit succeeds");
    let reply: serde_json::Value = serde_json::from_str(&out).expect("submit --json");
    reply["job_id"].as_str().expect("a job id").to_string()
}

/// Labels of one chart's axes and how many points its line has.
fn chart(browser: &Browser, id: &str) -> (Vec<String>, Vec<String>, usize, bool) {
    let found = browser.eval(&format!(
        "const svg = document.getElementById({id:?}); \
         const texts = cls => Array.from(svg.querySelectorAll('text.' + cls)).map(t => t.textContent); \
         const line = svg.querySelector('polyline'); \
         const points = line ? line.getAttribute('points').trim().split(' ') : []; \
         const base = points.length ? Math.max(...points.map(p => Number(p.split(',')[1]))) : 0; \
         const rises = points.some(p => Number(p.split(',')[1]) < base - 1); \
         return [texts('y-label'), texts('x-label'), points.length, rises];"
    ));
    let strings = |value: &serde_json::Value| -> Vec<String> {
        value
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    (
        strings(&found[0]),
        strings(&found[1]),
        found[2].as_u64().unwrap_or(0) as usize,
        found[3] == true,
    )
}

/// Elements of the page (or of `within`) wider than their box: what would scroll sideways.
fn sideways(browser: &Browser) -> serde_json::Value {
    browser.eval(
        "return [document.documentElement, ...document.querySelectorAll('section')] \
           .filter(e => e.scrollWidth > e.clientWidth + 1) \
           .map(e => (e.querySelector('h2') || e).innerText.split('\\n')[0] + ': ' + e.scrollWidth + ' > ' + e.clientWidth);",
    )
}

#[test]
fn charts_show_history_on_load_with_axes_and_the_job_list_filters_downloads_and_never_wraps_ids() {
    let Some((chromium, chromedriver)) = webdriver::installed() else {
        crate::support::skip_without("chromium and chromedriver are not installed");
        return;
    };
    let grid = WatchedGrid::start(&["w1", "w2"], "15s");
    let http = grid.http_addr();
    grid.wait_alive(2);
    let shots = tempfile::tempdir().expect("screenshot dir");

    // Work done before anyone looks: the charts must show it on load.
    let (genome_file, _) = genome(grid.dir.path(), 400_000);
    let search = grid.submit(&genome_file, "20000");
    grid.wait_completed(&search, Duration::from_secs(60));
    let julia = submit_json(&grid, &["julia", "--width", "64"]);
    grid.wait_completed(&julia, Duration::from_secs(60));
    // 300 replicas from seed 3: read, not run, so it is cancelled at once.
    let particles = submit_json(
        &grid,
        &[
            "particles",
            "--particles",
            "4",
            "--steps",
            "1",
            "--seed",
            "3",
            "--replicas",
            "300",
        ],
    );
    grid.client(&["cancel", &particles]).expect("cancel");
    add_long_alert(&grid);
    wait_for(
        "a history sample after the jobs",
        Duration::from_secs(30),
        || {
            let (status, _, body) =
                crate::support::http::request(&http, "GET", "/stats/history", None, "");
            let history: serde_json::Value = serde_json::from_slice(&body).ok()?;
            let samples = history["samples"].as_array()?;
            let done = samples.last()?["chunks_done"].as_u64()?;
            (status == 200 && samples.len() >= 3 && done >= 20).then_some(())
        },
    );

    let profile = grid.dir.path().join("chromium-profile");
    let browser = Browser::start(&chromium, &chromedriver, &profile, 1280, 900);
    browser.goto(&format!("http://{http}/"));
    // The first refresh after load draws the charts from the master's samples.
    let (y_labels, x_labels, points, rises) = wait_for(
        "the throughput chart drawn",
        Duration::from_secs(20),
        || {
            let drawn = chart(&browser, "chart-throughput");
            (drawn.2 >= 2).then_some(drawn)
        },
    );
    assert!(
        points >= 2 && rises,
        "the past throughput is on the chart on load: {points} points"
    );
    assert!(
        y_labels.len() >= 2 && y_labels.iter().all(|l| l.ends_with(" chunks/s")),
        "the value axis has its unit: {y_labels:?}"
    );
    assert!(
        x_labels.iter().any(|l| l == "time (UTC)")
            && x_labels
                .iter()
                .filter(|l| l.len() == 8 && l.as_bytes()[2] == b':')
                .count()
                >= 2,
        "the time axis has UTC clock times: {x_labels:?}"
    );
    let (queue_y, _, queue_points, _) = chart(&browser, "chart-queue");
    assert!(queue_points >= 2, "the queue chart has its history");
    assert!(
        queue_y
            .iter()
            .all(|l| l.ends_with(" tasks") || l == "1 task"),
        "the queue axis counts tasks, '1 task' in the singular: {queue_y:?}"
    );

    // One time zone, said once: every time on the page is UTC.
    let zone = browser.eval(
        "return [document.getElementById('tz').innerText, document.getElementById('conn').innerText, \
                 Array.from(document.querySelectorAll('th')).map(t => t.innerText).filter(t => /time|created/i.test(t))];",
    );
    assert_eq!(zone[0], "all times UTC", "{zone}");
    wait_for("the refresh time in UTC", Duration::from_secs(10), || {
        let conn = browser.eval("return document.getElementById('conn').innerText;");
        conn.as_str()?.ends_with(" UTC").then_some(())
    });
    for header in zone[2].as_array().expect("headers") {
        assert!(
            header.as_str().unwrap_or_default().contains("UTC"),
            "{zone}"
        );
    }

    // Job ids stay whole: each link is a single line box.
    wait_for("every job listed", Duration::from_secs(20), || {
        let rows = table(&browser, "jobs");
        [&search, &julia, &particles]
            .iter()
            .all(|id| rows.contains(id.as_str()))
            .then_some(())
    });
    let wrapped = browser.eval(
        "return Array.from(document.querySelectorAll('#jobs a')) \
           .filter(a => a.getClientRects().length !== 1).map(a => a.innerText);",
    );
    assert_eq!(wrapped, serde_json::json!([]), "no job id wraps");
    let particles_row = row(&browser, "jobs", &particles).expect("the particles job");
    assert!(
        particles_row.contains("300 replicas, seeds 3–302"),
        "the seeds read as a range: {particles_row}"
    );
    // The long alert wraps inside the table: nothing on the page scrolls sideways.
    wait_for("the long alert listed", Duration::from_secs(20), || {
        table(&browser, "alerts")
            .contains("an-unbroken-diagnostic-token")
            .then_some(())
    });
    assert_eq!(
        sideways(&browser),
        serde_json::json!([]),
        "no sideways scroll at 1280 px"
    );
    browser.screenshot(&shots.path().join("dashboard-history.png"));

    // The filter keeps the jobs matching every word typed.
    browser.eval(
        "const box = document.getElementById('job-filter'); box.value = 'julia completed'; \
         box.dispatchEvent(new Event('input')); return true;",
    );
    let shown = table(&browser, "jobs");
    let rows = browser.eval("return document.getElementById('jobs').rows.length;");
    assert_eq!(rows, 1, "only the Julia job: {shown}");
    assert!(shown.contains(&julia), "{shown}");
    browser.screenshot(&shots.path().join("dashboard-filtered.png"));
    browser.eval(
        "const box = document.getElementById('job-filter'); box.value = 'no-such-job'; \
         box.dispatchEvent(new Event('input')); return true;",
    );
    assert!(table(&browser, "jobs").contains("No job matches the filter"));

    // The job pages offer the results in each of their kind's formats, and the links work.
    for (job, expected) in [
        (&search, &["TSV", "BED", "JSON"][..]),
        (&julia, &["PNG", "JSON"][..]),
    ] {
        browser.goto(&format!("http://{http}/jobs/{job}/view"));
        let links = wait_for("the download links", Duration::from_secs(20), || {
            let links = browser.eval(
                "return Array.from(document.querySelectorAll('#downloads a')) \
                   .map(a => [a.innerText, new URL(a.href).pathname + new URL(a.href).search]);",
            );
            (links.as_array().is_some_and(|l| !l.is_empty())).then_some(links)
        });
        let links = links.as_array().expect("links");
        for label in expected {
            let link = links
                .iter()
                .find(|l| l[0] == *label)
                .unwrap_or_else(|| panic!("{job} offers {label}: {links:?}"));
            let path = link[1].as_str().expect("a path");
            let (status, content_type, body) =
                crate::support::http::request(&http, "GET", path, None, "");
            assert_eq!(status, 200, "{label} at {path}");
            match *label {
                "TSV" => assert!(body.starts_with(b"seqID\tpatternName"), "{label}"),
                "PNG" => assert!(
                    content_type == "image/png" && body.starts_with(b"\x89PNG"),
                    "{label}: {content_type}"
                ),
                "JSON" => assert!(
                    serde_json::from_slice::<serde_json::Value>(&body).is_ok(),
                    "{label} parses"
                ),
                _ => assert!(!body.is_empty(), "{label}"),
            }
        }
        browser.screenshot(
            &shots
                .path()
                .join(format!("job-{}.png", expected[0].to_lowercase())),
        );
    }
    assert_no_console_errors(&browser, "on the newcomer's pages");
    println!("screenshots: {}", shots.path().display());
    if std::env::var_os("KEEP_SCREENSHOT").is_some() {
        println!("kept {}", shots.keep().display());
    }
}

/// A command job's page, as a person reads it: each task with its exit code, and under the one
/// that failed the tail of its stderr.
#[test]
fn a_command_job_page_shows_each_task_s_exit_code_and_the_stderr_tail_of_a_failure() {
    let Some((chromium, chromedriver)) = webdriver::installed() else {
        crate::support::skip_without("chromium and chromedriver are not installed");
        return;
    };
    let mut grid = crate::support::grid::Grid::start(&[]);
    grid.worker_flags = vec!["--allow-commands".into()];
    grid.start_worker("w1", 1);
    let script =
        "echo task {i}; if [ {i} = 2 ]; then echo 'no such sample: S-0042' >&2; exit 3; fi";
    crate::command_tasks::submit(
        &grid,
        "cmd-page",
        &["--array", "1-2"],
        &["sh", "-c", script],
    );
    let status = grid.wait_finished("cmd-page", Duration::from_secs(120));
    assert_eq!(status["job"]["status"], "failed", "{status}");

    let http = grid.http_addr();
    let profile = grid.dir.path().join("chromium-profile");
    let browser = Browser::start(&chromium, &chromedriver, &profile, 1280, 900);
    browser.goto(&format!("http://{http}/jobs/cmd-page/view"));
    // The script itself holds the message too (in the task's spec): wait for a line that holds
    // it without the script, the stderr tail's.
    let tasks = wait_for(
        "the failure's stderr on the page",
        Duration::from_secs(30),
        || {
            let tasks = table(&browser, "tasks");
            tasks
                .lines()
                .any(|line| line.contains("no such sample: S-0042") && !line.contains("echo"))
                .then_some(tasks)
        },
    );
    let rows: Vec<Vec<&str>> = tasks.lines().map(|l| l.split('\t').collect()).collect();
    // Task 1 (chunk 0) exited 0, task 2 (chunk 1) exited 3; the stderr tail follows task 2.
    let exit_of = |chunk: &str| {
        rows.iter()
            .find(|cells| cells.first() == Some(&chunk))
            .and_then(|cells| cells.get(2).map(|c| c.trim().to_string()))
            .unwrap_or_else(|| panic!("no row for task {chunk} in\n{tasks}"))
    };
    assert_eq!(exit_of("cmd-page/0"), "0", "{tasks}");
    assert_eq!(exit_of("cmd-page/1"), "3", "{tasks}");
    let failed_at = rows
        .iter()
        .position(|cells| cells.first() == Some(&"cmd-page/1"))
        .expect("the failed task's row");
    assert!(
        rows.get(failed_at + 1)
            .is_some_and(|cells| cells.join(" ").contains("no such sample: S-0042")),
        "the stderr tail is not under the failed task:\n{tasks}"
    );
    assert!(
        browser.text().contains("no such sample: S-0042"),
        "the stderr is not visible on the page"
    );
    browser.screenshot(&grid.dir.path().join("command-job-page.png"));
    assert_no_console_errors(&browser, "on the command job page");
}

/// A command job's page while a task runs: task 1 exits 0, task 3 fails with a message on
/// stderr, task 2 prints a line and then blocks on a FIFO the test opens later. Meanwhile the
/// page lists task 2 as running on its worker with the line it printed; once the gate opens it
/// leaves the running tasks and its exit code appears among the finished ones.
#[test]
fn a_command_job_page_shows_a_running_task_with_its_output_then_its_exit_code() {
    use std::io::Write;
    let Some((chromium, chromedriver)) = webdriver::installed() else {
        crate::support::skip_without("chromium and chromedriver are not installed");
        return;
    };
    let mut grid = crate::support::grid::Grid::start(&[]);
    grid.worker_flags = vec!["--allow-commands".into()];
    grid.start_worker("w1", 2);
    let gate = grid.path("gate");
    let made = std::process::Command::new("mkfifo")
        .arg(&gate)
        .status()
        .expect("running mkfifo");
    assert!(made.success());
    let script = format!(
        "if [ {{i}} = 3 ]; then echo 'disk full on /scratch' >&2; exit 5; fi; \
         echo started {{i}}; if [ {{i}} = 2 ]; then read word < {}; fi; echo done {{i}}",
        gate.display()
    );
    crate::command_tasks::submit(
        &grid,
        "cmd-live",
        &["--array", "1-3"],
        &["sh", "-c", &script],
    );

    let http = grid.http_addr();
    let profile = grid.dir.path().join("chromium-profile");
    let browser = Browser::start(&chromium, &chromedriver, &profile, 1280, 900);
    browser.goto(&format!("http://{http}/jobs/cmd-live/view"));
    // Task 2 cannot end before the gate opens: tasks 1 and 3 finish, task 2 runs.
    let running = wait_for(
        "task 2 running with its output on the page, tasks 1 and 3 finished",
        Duration::from_secs(120),
        || {
            let running = table(&browser, "running");
            let tasks = table(&browser, "tasks");
            let ready = running.contains("started 2")
                && tasks.contains("disk full on /scratch")
                && tasks.lines().filter(|l| l.starts_with("cmd-live/")).count() == 2;
            ready.then_some(running)
        },
    );
    let rows: Vec<Vec<&str>> = running.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows[0][0], "2", "the running task is task 2:\n{running}");
    assert_eq!(rows[0][1], "w1", "{running}");
    assert_eq!(rows[0].get(4).map(|c| c.trim()), Some("10 B"), "{running}");
    assert_eq!(rows.len(), 2, "one task and its output:\n{running}");
    assert_eq!(rows[1].join(" ").trim(), "stdout: started 2", "{running}");
    assert!(
        browser.text().contains("Running tasks"),
        "the running tasks' section is shown"
    );
    let exit_of = |tasks: &str, chunk: &str| {
        tasks
            .lines()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .find(|cells| cells.first() == Some(&chunk))
            .and_then(|cells| cells.get(2).map(|c| c.trim().to_string()))
    };
    let tasks = table(&browser, "tasks");
    assert_eq!(
        exit_of(&tasks, "cmd-live/0").as_deref(),
        Some("0"),
        "{tasks}"
    );
    assert_eq!(
        exit_of(&tasks, "cmd-live/2").as_deref(),
        Some("5"),
        "{tasks}"
    );
    assert_eq!(exit_of(&tasks, "cmd-live/1"), None, "{tasks}");
    browser.screenshot(&grid.dir.path().join("command-job-running.png"));

    std::fs::OpenOptions::new()
        .write(true)
        .open(&gate)
        .and_then(|mut fifo| fifo.write_all(b"go\n"))
        .expect("opening the gate");
    let tasks = wait_for(
        "task 2's exit code on the page",
        Duration::from_secs(120),
        || {
            let tasks = table(&browser, "tasks");
            exit_of(&tasks, "cmd-live/1").map(|_| tasks)
        },
    );
    assert_eq!(
        exit_of(&tasks, "cmd-live/1").as_deref(),
        Some("0"),
        "{tasks}"
    );
    let section_hidden = browser.eval("return document.getElementById('running-section').hidden;");
    assert_eq!(
        section_hidden,
        serde_json::Value::Bool(true),
        "no task runs any more"
    );
    assert_eq!(table(&browser, "running"), "");
    assert_no_console_errors(&browser, "on the running command job's page");
}
