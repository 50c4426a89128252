//! The dashboard as a person sees it, in headless Chromium at 1280 px against a live grid: both
//! workers listed, a job reaching 100 %, a long failed-job error that does not make the page
//! scroll sideways, a critical alert after a worker is killed with SIGKILL, a "forget" button that
//! removes the dead worker, and no console error at any point. A screenshot is saved in the
//! test's temp dir.

use std::time::Duration;

use crate::support::procs::wait_for;
use crate::support::watchman_grid::{genome, Grid};
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
fn add_failed_job_with_a_long_error(grid: &Grid) -> String {
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
    let mut grid = Grid::start(&["w1", "w2"], "15s");
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
    let throughput =
        browser.eval("return document.querySelector('#chart-throughput polyline') !== null;");
    assert_eq!(throughput, true, "the throughput chart is drawn");

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
