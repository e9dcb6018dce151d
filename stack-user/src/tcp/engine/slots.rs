//! The engine's connection slots, stored in fixed-size chunks: growing
//! adds a chunk and never moves the slots already there, so the table
//! grows without a copy (no latency spike at a million connections, where
//! a doubling `Vec` would copy half a gigabyte) and with at most one
//! chunk of unused room (a doubling `Vec` leaves up to half its memory
//! unused: 300,000 slots in a 524,288-slot `Vec`).

/// Slots per chunk: a few MiB of control blocks.
pub(super) const CHUNK: usize = 4096;

/// A growable array of `T` in chunks of [`CHUNK`].
#[derive(Debug)]
pub(super) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Chunked<T> {
    pub(super) fn new() -> Chunked<T> {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    pub(super) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks.get_mut(i / CHUNK)?.get_mut(i % CHUNK)
    }

    /// Appends `v` (index `len()` before the call).
    pub(super) fn push(&mut self, v: T) {
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK => c.push(v),
            _ => {
                let mut c = Vec::with_capacity(CHUNK);
                c.push(v);
                self.chunks.push(c);
            }
        }
        self.len += 1;
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.chunks.iter_mut().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_slots_keep_every_entry_and_their_addresses_across_growth() {
        let mut c = Chunked::new();
        c.push(0u64);
        let first: *const u64 = c.get(0).unwrap();
        let n = 3 * CHUNK + 17;
        for i in 1..n as u64 {
            c.push(i);
        }
        assert_eq!(c.len(), n);
        // Growth moved nothing.
        assert_eq!(first, c.get(0).unwrap() as *const u64);
        assert!((0..n).all(|i| c.get(i) == Some(&(i as u64))));
        assert_eq!(c.get(n), None);
        assert_eq!(c.iter().count(), n);
        for v in c.iter_mut() {
            *v += 1;
        }
        assert_eq!(c.get_mut(CHUNK).copied(), Some(CHUNK as u64 + 1));
        // At most one chunk of unused room.
        let room: usize = c.chunks.iter().map(|k| k.capacity()).sum();
        assert!(room - n < CHUNK);
    }
}
