//! Paging cursors: a paged query (an ARM role-assignment list, a Resource Graph query) takes its snapshot once —
//! the matching rows in order, shared with the store rather than copied — and every `$skipToken` names that
//! snapshot and an offset in it, so a later page costs what it returns, not a new scan and sort of the store.
//!
//! The table is bounded. A cursor lives [`CURSOR_IDLE`] after its last use and at most [`MAX_CURSORS`] live at
//! once (opening one more drops the least recently used). A token that names no live cursor, or one opened for
//! another caller or another query, is refused with 400 `InvalidSkipToken`. Azure documents no error for an
//! expired or foreign token (the role-assignment and Resource Graph specs only describe `$skipToken` as opaque):
//! the emulator's answer is its own choice, written in `emulator/README.md`.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A cursor unused this long is dropped.
pub const CURSOR_IDLE: Duration = Duration::from_mins(10);
/// At most this many cursors per table live at once.
pub const MAX_CURSORS: usize = 64;

/// What a cursor keeps: each kind of query downcasts to its own snapshot type.
pub(crate) type AnySnapshot = dyn Any + Send + Sync;

struct Cursor<T: ?Sized> {
    snapshot: Arc<T>,
    /// Who may continue it (caller and query, hashed by the opener).
    binding: String,
    last_used: Instant,
}

/// Live cursors of one kind of query.
pub(crate) struct Cursors<T: ?Sized = AnySnapshot> {
    next_id: u64,
    live: HashMap<u64, Cursor<T>>,
}

impl<T: ?Sized> Default for Cursors<T> {
    fn default() -> Self {
        Self {
            next_id: 0,
            live: HashMap::new(),
        }
    }
}

impl<T: ?Sized> Cursors<T> {
    /// Keeps `snapshot` for later pages; returns the cursor's id.
    pub fn open(&mut self, snapshot: Arc<T>, binding: String, now: Instant) -> u64 {
        self.expire(now);
        while self.live.len() >= MAX_CURSORS {
            let oldest = self
                .live
                .iter()
                .min_by_key(|(id, c)| (c.last_used, **id))
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => {
                    self.live.remove(&id);
                }
                None => break,
            }
        }
        self.next_id += 1;
        self.live.insert(
            self.next_id,
            Cursor {
                snapshot,
                binding,
                last_used: now,
            },
        );
        self.next_id
    }

    /// The snapshot of a live cursor opened with the same binding.
    pub fn resume(&mut self, id: u64, binding: &str, now: Instant) -> Option<Arc<T>> {
        self.expire(now);
        let cursor = self.live.get_mut(&id)?;
        if cursor.binding != binding {
            return None;
        }
        cursor.last_used = now;
        Some(Arc::clone(&cursor.snapshot))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn clear(&mut self) {
        self.live.clear();
    }

    fn expire(&mut self, now: Instant) {
        self.live
            .retain(|_, c| now.saturating_duration_since(c.last_used) < CURSOR_IDLE);
    }
}

/// The token of the page of cursor `id` starting at `offset`.
pub fn token(id: u64, offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("cursor:{id}:{offset}"))
}

/// (cursor id, offset) of a token [`token`] made; `None` for anything else.
pub fn read_token(token: &str) -> Option<(u64, usize)> {
    let raw = URL_SAFE_NO_PAD.decode(token.trim().as_bytes()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, offset) = text.strip_prefix("cursor:")?.split_once(':')?;
    Some((id.parse().ok()?, offset.parse().ok()?))
}

/// A binding: who asked what, hashed (tokens are not secrets, but a cursor serves only its opener's query).
pub fn binding(parts: &[&str]) -> String {
    crate::crypto::hex(&crate::crypto::sha256(parts.join("\n").as_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_garbage() {
        assert_eq!(read_token(&token(7, 1000)), Some((7, 1000)));
        for bad in ["", "garbage", "b2Zmc2V0OjE", "e30=", "%%%"] {
            assert_eq!(read_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_cursor_serves_only_its_binding_until_it_expires() {
        let t0 = Instant::now();
        let mut cursors = Cursors::default();
        let id = cursors.open(Arc::new(vec![1, 2, 3]), "a".into(), t0);
        assert_eq!(cursors.resume(id, "b", t0), None);
        assert_eq!(*cursors.resume(id, "a", t0).unwrap(), vec![1, 2, 3]);
        // Each use keeps it alive; idleness ends it.
        let later = t0 + CURSOR_IDLE.checked_sub(Duration::from_secs(1)).unwrap();
        assert!(cursors.resume(id, "a", later).is_some());
        assert!(cursors.resume(id, "a", later + CURSOR_IDLE).is_none());
        assert_eq!(cursors.len(), 0);
    }

    #[test]
    fn the_table_is_bounded_by_dropping_the_least_recently_used() {
        let t0 = Instant::now();
        let mut cursors = Cursors::default();
        let first = cursors.open(Arc::new(0), "x".into(), t0);
        let second = cursors.open(Arc::new(1), "x".into(), t0 + Duration::from_millis(1));
        // The first is used again: the second is now the least recently used.
        assert!(
            cursors
                .resume(first, "x", t0 + Duration::from_millis(2))
                .is_some()
        );
        for i in 0..MAX_CURSORS - 1 {
            cursors.open(Arc::new(i), "x".into(), t0 + Duration::from_millis(3));
        }
        assert_eq!(cursors.len(), MAX_CURSORS);
        assert!(
            cursors
                .resume(second, "x", t0 + Duration::from_millis(4))
                .is_none()
        );
        assert!(
            cursors
                .resume(first, "x", t0 + Duration::from_millis(4))
                .is_some()
        );
    }
}
