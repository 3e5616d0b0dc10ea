//! Single flight: one compile per key in a process. The first caller of a
//! key (the leader) compiles and stores; the others wait for its result.

use crate::digest::Key;
use crate::store::ArtifactStore;
use std::sync::{Arc, Mutex, PoisonError};

/// One compile in progress, and what its waiters are given.
#[derive(Default)]
pub(crate) struct Flight {
    result: Mutex<Option<Result<Arc<[u8]>, String>>>,
    done: std::sync::Condvar,
}

impl Flight {
    pub(crate) fn wait(&self) -> Result<Arc<[u8]>, String> {
        let mut result = self.result.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(result) = &*result {
                return result.clone();
            }
            result = self
                .done
                .wait(result)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The leader's side of a `Flight`: on drop (a return or a panic), hands
/// its result to the waiters and frees the key's slot.
pub(crate) struct Landing<'a> {
    pub(crate) store: &'a ArtifactStore,
    pub(crate) key: &'a Key,
    pub(crate) flight: &'a Flight,
    pub(crate) result: Option<Result<Arc<[u8]>, String>>,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        let result = self.result.take().unwrap_or_else(|| {
            Err(if std::thread::panicking() {
                "the thread compiling this module panicked".to_string()
            } else {
                "the store could not load or compile this module".to_string()
            })
        });
        *self
            .flight
            .result
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(result);
        self.flight.done.notify_all();
        self.store
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(self.key);
    }
}
