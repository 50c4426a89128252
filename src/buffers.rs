//! A few large byte buffers kept for reuse within a process. The search's hot paths fill a
//! buffer of a few MiB for every chunk (a worker decoding a stored range, the master cutting an
//! upload into chunks) and drop it soon after. The allocator hands such a buffer's pages back
//! to the kernel, so the next fresh buffer pays a page fault and a cleared page for every 4 KiB
//! (a fifth of a repeat search's time on Redis). Handing the buffer back instead, once nothing
//! else reads it, lets the next chunk write into memory that is already mapped.

/// Most buffers kept, and the largest kept. Two buffers of at most 16 MiB keep at most 32 MiB in
/// a process that no longer searches.
const SPARE_BUFFERS: usize = 2;
const SPARE_BUFFER_BYTES: usize = 16 << 20;

static SPARES: Spares = Spares::new();

/// An empty buffer with room for `len` bytes: one given back by [`give_back`] when one is large
/// enough, or a new one.
pub fn take(len: usize) -> Vec<u8> {
    SPARES.take(len)
}

/// Keeps a buffer for the next [`take`] once nothing else refers to it; a
/// small, a shared or a huge one is simply dropped, as is any past [`SPARE_BUFFERS`].
pub fn give_back(data: bytes::Bytes) {
    SPARES.keep(data);
}

/// Buffers kept for reuse.
struct Spares(std::sync::Mutex<Vec<Vec<u8>>>);

impl Spares {
    const fn new() -> Self {
        Spares(std::sync::Mutex::new(Vec::new()))
    }

    fn take(&self, len: usize) -> Vec<u8> {
        let reused = {
            let mut spares = self.0.lock().unwrap_or_else(|e| e.into_inner());
            spares
                .iter()
                .position(|spare| spare.capacity() >= len)
                .map(|at| spares.swap_remove(at))
        };
        match reused {
            Some(mut buffer) => {
                buffer.clear();
                buffer
            }
            None => Vec::with_capacity(len),
        }
    }

    fn keep(&self, data: bytes::Bytes) {
        // A buffer another holder still reads would come back as a copy: not worth keeping.
        if data.len() < 64 << 10 || data.len() > SPARE_BUFFER_BYTES || !data.is_unique() {
            return;
        }
        let buffer = Vec::from(data);
        if buffer.capacity() > SPARE_BUFFER_BYTES {
            return;
        }
        let mut spares = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if spares.len() < SPARE_BUFFERS {
            spares.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_reused_only_when_nothing_else_holds_it_and_only_a_few_are_kept() {
        let spares = Spares::new();
        let len = 1 << 20;
        // Still read elsewhere: never handed out again.
        let shared = bytes::Bytes::from(vec![b'A'; len]);
        let reader = shared.clone();
        spares.keep(shared);
        assert!(
            spares.0.lock().unwrap().is_empty(),
            "not even a copy is kept"
        );
        let mut fresh = spares.take(len);
        assert_ne!(fresh.as_ptr(), reader.as_ptr());
        fresh.resize(len, b'C');
        assert!(reader.iter().all(|&b| b == b'A'));
        // Held by no one else: the same memory comes back, empty, for a range that fits in it.
        let alone = bytes::Bytes::from(vec![b'G'; len]);
        let at = alone.as_ptr();
        spares.keep(alone);
        let reused = spares.take(len / 2);
        assert_eq!((reused.as_ptr(), reused.len()), (at, 0));
        assert!(reused.capacity() >= len);
        // A range larger than every kept buffer gets a new one; the kept one stays.
        spares.keep(bytes::Bytes::from(vec![b'T'; len]));
        assert!(spares.take(len * 2).capacity() >= len * 2);
        assert_eq!(spares.0.lock().unwrap().len(), 1);
        // Small, huge and surplus buffers are dropped.
        spares.keep(bytes::Bytes::from(vec![0u8; 1000]));
        spares.keep(bytes::Bytes::from(vec![0u8; SPARE_BUFFER_BYTES + 1]));
        for _ in 0..SPARE_BUFFERS + 3 {
            spares.keep(bytes::Bytes::from(vec![0u8; len]));
        }
        let kept = spares.0.lock().unwrap();
        assert_eq!(kept.len(), SPARE_BUFFERS);
        assert!(kept.iter().all(|buffer| buffer.capacity() == len));
    }
}
