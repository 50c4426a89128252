//! The master under attack with raw sockets: idle and trickling connections, unauthenticated
//! peers announcing huge frames, a thousand concurrent clients, over-long job ids, a gzip bomb and
//! a master out of file descriptors.
//! Each test asserts the refusal, and that an honest job run afterwards is still exact.

use std::time::{Duration, Instant};

use crate::support::grid::{naive_hits, parse_total, write_fasta, Bases, Grid, Records};
use crate::support::raw::{
    client_hello as hello, connect_from, flood, frame, peak_rss_kib, read_json,
};
use crate::support::wait_for;
use tokio::io::AsyncWriteExt;

const JOB_TIMEOUT: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("tokio runtime")
}

/// A normal client's round trip: hello, list the jobs; returns how long it took.
async fn normal_client(master: &str) -> Duration {
    let started = Instant::now();
    let mut stream = connect_from([127, 0, 0, 1], master).await.expect("connect");
    stream.write_all(&hello()).await.expect("hello");
    let welcome = read_json(&mut stream).await.expect("welcome");
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    stream
        .write_all(&frame(br#"{"v":1,"type":"list_jobs"}"#))
        .await
        .expect("list_jobs");
    let jobs = read_json(&mut stream).await.expect("jobs");
    assert_eq!(jobs["type"], "jobs", "{jobs}");
    started.elapsed()
}

/// A small genome, a worker, a job: the grid's count must equal a naive scan's.
fn honest_job_is_exact(grid: &mut Grid, job: &str) {
    let records: Records = vec![("chr1".into(), Bases::new(7).take(60_000))];
    let path = grid.path(&format!("{job}.fa"));
    write_fasta(&path, &records, 60, "\n");
    if grid.workers.is_empty() {
        grid.start_worker("w1", 1);
    }
    let file = path.display().to_string();
    grid.cli_ok(&[
        "submit",
        &file,
        "-p",
        "ACGTA",
        "--chunk-size",
        "10000",
        "--job-id",
        job,
    ]);
    let status = grid.wait_finished(job, JOB_TIMEOUT);
    assert_eq!(status["job"]["status"], "completed", "{status}");
    let expected = naive_hits(&records, "ACGTA", false).len() as u64;
    assert_eq!(parse_total(&grid.cli_ok(&["results", job])), expected);
}

/// The master's peak resident set, in KiB.
fn master_peak_kib(grid: &Grid) -> u64 {
    peak_rss_kib(grid.master.as_ref().expect("master running").pid())
}

fn spool_files(grid: &Grid) -> Vec<String> {
    std::fs::read_dir(grid.data_dir().join("spool"))
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                // Stored genomes have a directory of their own.
                .filter(|name| name != "genomes")
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn slowloris_and_idle_floods_do_not_lock_out_a_normal_client() {
    let mut grid = Grid::start(&["--hello-timeout", "2"]);
    let master = grid.addr.clone();
    runtime().block_on(async {
        // 128 connections that never speak and 128 that trickle a hello one byte every 3 s,
        // from another address; the master must close every one of them, by the hello
        // deadline or as busy.
        let attackers = flood(&master, 256).await;
        // A normal client, from its own address, throughout the attack.
        let mut every = tokio::time::interval(Duration::from_millis(1500));
        for _ in 0..6 {
            every.tick().await;
            let took = normal_client(&master).await;
            assert!(
                took < Duration::from_secs(1),
                "a normal client waited {took:?}"
            );
        }
        for attacker in attackers {
            attacker.await.expect("attacker task");
        }
    });
    honest_job_is_exact(&mut grid, "after-flood");
}

/// Out of file descriptors, every accept fails: the master logs it and pauses longer each time
/// instead of spinning on the listener, and once descriptors are free again it serves a client
/// and runs an honest job exactly.
#[test]
fn out_of_file_descriptors_the_master_pauses_then_serves_again() {
    use rustix::process::{getrlimit, prlimit, Pid, Resource, Rlimit};
    let mut grid = Grid::start(&[]);
    let master = grid.addr.clone();
    let pid = grid.master.as_ref().expect("the master runs").pid();
    let pid = Pid::from_raw(pid as i32).expect("a pid");
    let open = std::fs::read_dir(format!("/proc/{pid}/fd", pid = pid.as_raw_nonzero()))
        .expect("the master's descriptors")
        .count() as u64;
    // Only the soft limit drops: raising it back needs no privilege. The master inherited this
    // process's limits.
    let scarce = Rlimit {
        current: Some(open + 2),
        maximum: getrlimit(Resource::Nofile).maximum,
    };
    let before = prlimit(Some(pid), Resource::Nofile, scarce).expect("prlimit");
    // Connections the master cannot all accept: the kernel completes them, the master runs out
    // of descriptors accepting them.
    let held: Vec<std::net::TcpStream> = (0..16)
        .filter_map(|_| std::net::TcpStream::connect(&master).ok())
        .collect();
    assert!(!held.is_empty(), "no connection reached the master");
    wait_for(
        "the failed accept to be logged",
        Duration::from_secs(30),
        || grid.master_logs().contains("accept failed").then_some(()),
    );
    let failures = || grid.master_logs().matches("accept failed").count();
    let first = failures();
    std::thread::sleep(Duration::from_secs(2));
    // Pauses doubling from 10 ms to a second allow about eight attempts in two seconds; a loop
    // that spins logs thousands.
    let during = failures() - first;
    assert!(
        during <= 20,
        "{during} failed accepts logged in two seconds"
    );
    drop(held);
    prlimit(Some(pid), Resource::Nofile, before).expect("prlimit back");
    runtime().block_on(async {
        let took = normal_client(&master).await;
        assert!(took < Duration::from_secs(10), "a client waited {took:?}");
    });
    honest_job_is_exact(&mut grid, "after-descriptors");
}

#[test]
fn a_thousand_concurrent_status_queries_wait_rather_than_fail() {
    let grid = Grid::start(&[]);
    let master = grid.addr.clone();
    let replies = runtime().block_on(async {
        let queries = (0..1000).map(|_| {
            let master = master.clone();
            tokio::spawn(async move {
                let mut stream = connect_from([127, 0, 0, 1], &master).await.ok()?;
                stream.write_all(&hello()).await.ok()?;
                let first = read_json(&mut stream).await?;
                if first["type"] != "welcome" {
                    return Some(first["code"].as_str()?.to_string());
                }
                let query = br#"{"v":1,"type":"query_status","job_id":"none"}"#;
                stream.write_all(&frame(query)).await.ok()?;
                let reply = read_json(&mut stream).await?;
                Some(reply["code"].as_str().unwrap_or("ok").to_string())
            })
        });
        let mut replies = Vec::new();
        for query in queries.collect::<Vec<_>>() {
            replies.push(query.await.expect("query task"));
        }
        replies
    });
    let answered = replies
        .iter()
        .filter(|r| r.as_deref() == Some("no_such_job"))
        .count();
    let busy = replies
        .iter()
        .filter(|r| r.as_deref() == Some("busy"))
        .count();
    assert!(answered >= 990, "{answered} answered, {busy} busy of 1000");
}

#[test]
fn unauthenticated_large_frames_are_refused_at_64_kib_with_bounded_memory() {
    let mut grid = Grid::start(&[]);
    let master = grid.addr.clone();
    runtime().block_on(async {
        let mut peers = Vec::new();
        for i in 0..120u32 {
            let master = master.clone();
            peers.push(tokio::spawn(async move {
                let source = [127, 0, 0, 10 + (i % 4) as u8];
                let mut stream = connect_from(source, &master).await.expect("connect");
                if i % 2 == 0 {
                    // Announces 16 MiB and sends most of it before a hello.
                    let mut bytes = ((16u32 << 20) - 16).to_be_bytes().to_vec();
                    bytes.extend(vec![b'A'; 256 * 1024]);
                    let _ = stream.write_all(&bytes).await;
                    let reply = read_json(&mut stream).await;
                    if let Some(reply) = reply {
                        assert_eq!(reply["code"], "frame_too_large", "{reply}");
                    }
                    let mut rest = vec![b'A'; 1 << 20];
                    for _ in 0..15 {
                        if stream.write_all(&rest).await.is_err() {
                            break;
                        }
                    }
                    rest.clear();
                } else {
                    // Just under the pre-hello limit, and held open without the last bytes.
                    let mut bytes = (60_000u32).to_be_bytes().to_vec();
                    bytes.extend(vec![b'{'; 59_000]);
                    stream.write_all(&bytes).await.expect("most of a frame");
                    let reply = read_json(&mut stream).await;
                    if let Some(reply) = reply {
                        let code = reply["code"].as_str().unwrap_or_default().to_string();
                        assert!(code == "timeout" || code == "busy", "{reply}");
                    }
                }
            }));
        }
        for peer in peers {
            peer.await.expect("peer task");
        }
    });
    let peak_mib = master_peak_kib(&grid) / 1024;
    assert!(peak_mib < 100, "the master peaked at {peak_mib} MiB");
    // After a hello, frames up to --max-frame pass: the honest upload sends large data frames.
    honest_job_is_exact(&mut grid, "after-memory-attack");
}

#[test]
fn the_longest_job_id_runs_end_to_end_and_one_more_character_is_refused() {
    let mut grid = Grid::start(&[]);
    let longest = "j".repeat(gridwatch::jobs::MAX_JOB_ID_LEN);
    honest_job_is_exact(&mut grid, &longest);
    let too_long = format!("{longest}x");
    let path = grid.path("one.fa");
    write_fasta(&path, &[("r".into(), Bases::new(3).take(1000))], 60, "\n");
    let stderr = grid.cli_refused(&[
        "submit",
        &path.display().to_string(),
        "-p",
        "ACGT",
        "--job-id",
        &too_long,
    ]);
    assert!(
        stderr.contains(&format!("1-{}", gridwatch::jobs::MAX_JOB_ID_LEN)),
        "{stderr}"
    );
    assert!(spool_files(&grid).is_empty(), "{:?}", spool_files(&grid));
}

#[test]
fn a_gzip_bomb_through_the_master_is_refused_as_too_large() {
    let mut grid = Grid::start(&["--max-upload", &(64u64 << 20).to_string()]);
    let path = grid.path("bomb.fa.gz");
    {
        use std::io::Write;
        let file = std::fs::File::create(&path).expect("bomb file");
        let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::best());
        encoder.write_all(b">bomb\n").expect("header");
        let block = vec![b'A'; 1 << 20];
        for _ in 0..1024 {
            encoder.write_all(&block).expect("bases");
        }
        encoder.finish().expect("gzip");
    }
    let compressed = std::fs::metadata(&path).expect("bomb size").len();
    assert!(compressed < 2 << 20, "{compressed} bytes of gzip");
    let stderr = grid.cli_refused(&[
        "submit",
        &path.display().to_string(),
        "-p",
        "ACGT",
        "--job-id",
        "bomb",
    ]);
    assert!(stderr.contains("decompression"), "{stderr}");
    let status = grid.status("bomb");
    assert_eq!(status["job"]["status"], "failed", "{status}");
    assert!(
        grid.master_logs().contains("upload_too_large"),
        "the refusal is upload_too_large"
    );
    assert!(spool_files(&grid).is_empty(), "{:?}", spool_files(&grid));
    honest_job_is_exact(&mut grid, "after-bomb");
}

/// Mounts a `size` tmpfs on `dir`; `None` (with the reason printed) where mounting is not allowed.
fn mount_tmpfs(dir: &std::path::Path, size: &str) -> Option<TmpfsMount> {
    std::fs::create_dir_all(dir).expect("mount point");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output();
    match mounted {
        Ok(out) if out.status.success() => Some(TmpfsMount(dir.to_path_buf())),
        Ok(out) => {
            eprintln!(
                "skipping: cannot mount a tmpfs ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            None
        }
        Err(err) => {
            eprintln!("skipping: cannot run mount ({err})");
            None
        }
    }
}

/// Unmounts on drop.
struct TmpfsMount(std::path::PathBuf);

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_fails_the_upload_cleanly_and_the_master_restarts() {
    let mut grid = Grid::start(&[]);
    // The data dir becomes a small tmpfs: stop the master, mount over it, start again.
    if let Some(mut master) = grid.master.take() {
        master.kill9();
    }
    let data_dir = grid.data_dir();
    std::fs::remove_dir_all(&data_dir).expect("emptying the data dir");
    let Some(_mount) = mount_tmpfs(&data_dir, "12m") else {
        return;
    };
    grid.start_master();
    let spool = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir.join("spool"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    // Stored genomes have a directory of their own, checked apart.
                    .filter(|name| name != "genomes")
                    .collect()
            })
            .unwrap_or_default()
    };

    // Known size, larger than the disk: refused before a byte is stored.
    let records: Records = vec![("big".into(), Bases::new(11).take(20 << 20))];
    let big = grid.path("big.fa");
    write_fasta(&big, &records, 60, "\n");
    let stderr = grid.cli_refused(&[
        "submit",
        &big.display().to_string(),
        "-p",
        "ACGT",
        "--job-id",
        "big",
    ]);
    assert!(stderr.contains("bytes free"), "{stderr}");

    // Compressed, so its size looks fine, but it fills the disk midway: the job fails. Its
    // genome is stored packed, a quarter byte a base, so it takes 96 Mi bases (24 MiB packed,
    // twice the disk) to fill it; a repeated unit keeps the compressed file small.
    let gz = grid.path("big.fa.gz");
    {
        use std::io::Write;
        let file = std::fs::File::create(&gz).expect("gzip file");
        let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let unit = Bases::new(12).take(600);
        encoder.write_all(b">big\n").expect("gzip");
        for _ in 0..(96usize << 20) / unit.len() {
            for line in unit.chunks(60) {
                encoder.write_all(line).expect("gzip");
                encoder.write_all(b"\n").expect("gzip");
            }
        }
        encoder.finish().expect("gzip");
    }
    let stderr = grid.cli_refused(&[
        "submit",
        &gz.display().to_string(),
        "-p",
        "ACGT",
        "--job-id",
        "midway",
    ]);
    assert!(stderr.contains("disk filled up"), "{stderr}");
    assert_eq!(grid.status("midway")["job"]["status"], "failed");
    assert!(
        spool(&data_dir).is_empty(),
        "orphan spool: {:?}",
        spool(&data_dir)
    );
    let genomes = std::fs::read_dir(data_dir.join("spool").join("genomes"))
        // Beside the genomes, the directory's id (read by workers that read it in place).
        .map(|d| d.flatten().filter(|e| e.file_name() != "store-id").count())
        .unwrap_or(0);
    assert_eq!(genomes, 0, "a failed upload leaves no genome behind");

    // Later submits work, and the master restarts on the same directory.
    honest_job_is_exact(&mut grid, "after-full");
    if let Some(mut master) = grid.master.take() {
        master.kill9();
    }
    grid.start_master();
    honest_job_is_exact(&mut grid, "after-restart");
}
