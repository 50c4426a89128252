//! A running task's output tail (`Leases::extend_with_output`, `QueueAdmin::live_output`): kept
//! while the lease is held, each piece appended once, bounded to the last bytes of each stream,
//! listed per job without its text, and dropped when the task is acked or its job cancelled.

use gridwatch::backend::live_output::{OutputPiece, LIVE_TAIL_BYTES, MAX_PIECE_BYTES};

use super::fixtures::*;

fn piece(stdout_offset: u64, stdout: &str, stderr_offset: u64, stderr: &str) -> OutputPiece {
    OutputPiece {
        stdout_offset,
        stdout: stdout.into(),
        stderr_offset,
        stderr: stderr.into(),
    }
}

pub async fn a_running_task_s_output_tail_is_kept_while_held_and_dropped_when_it_ends(s: &Subject) {
    submit(s, "j", 2).await;
    let first = must_lease(s, "w1").await;
    let second = must_lease(s, "w1").await;
    let chunk = first.id.chunk;
    assert!(s.queue.live_output("j", chunk).await.unwrap().is_none());
    // The same piece twice, then the next: each byte once.
    for sent in [
        piece(0, "line 1\n", 0, ""),
        piece(0, "line 1\n", 0, ""),
        piece(7, "line 2\n", 0, "oops\n"),
    ] {
        assert!(s.queue.extend_with_output(&first, &sent).await.unwrap());
    }
    let live = s
        .queue
        .live_output("j", chunk)
        .await
        .unwrap()
        .expect("a tail");
    assert_eq!(
        (live.stdout.offset, live.stdout.text.as_str()),
        (0, "line 1\nline 2\n")
    );
    assert_eq!(live.stderr.text, "oops\n");
    assert_eq!(live.worker, "w1");
    // Past the bound only the last bytes stay: two full pieces after the 14 bytes above.
    let (a, b) = ("a".repeat(MAX_PIECE_BYTES), "b".repeat(MAX_PIECE_BYTES));
    let after = 14 + MAX_PIECE_BYTES as u64;
    s.queue
        .extend_with_output(&first, &piece(14, &a, 5, ""))
        .await
        .unwrap();
    s.queue
        .extend_with_output(&first, &piece(after, &b, 5, ""))
        .await
        .unwrap();
    let live = s
        .queue
        .live_output("j", chunk)
        .await
        .unwrap()
        .expect("a tail");
    let end = after + MAX_PIECE_BYTES as u64;
    assert_eq!(live.stdout.end(), end);
    assert_eq!(live.stdout.text.len(), LIVE_TAIL_BYTES);
    assert!(live.stdout.text.ends_with(&b[b.len() - 10..]));
    // Listed without text, its stream's size kept.
    let listed = s.queue.live_tasks("j").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].chunk, listed[0].stdout.end()), (chunk, end));
    assert!(listed[0].stdout.text.is_empty());
    // Acked: gone.
    s.queue.ack(&first).await.unwrap();
    assert!(s.queue.live_output("j", chunk).await.unwrap().is_none());
    assert!(s.queue.live_tasks("j").await.unwrap().is_empty());
    // Cancelled: gone too.
    assert!(s
        .queue
        .extend_with_output(&second, &piece(0, "two\n", 0, ""))
        .await
        .unwrap());
    assert!(s
        .queue
        .live_output("j", second.id.chunk)
        .await
        .unwrap()
        .is_some());
    s.queue.cancel_job("j").await.unwrap();
    assert!(s
        .queue
        .live_output("j", second.id.chunk)
        .await
        .unwrap()
        .is_none());
}
