//! Single flight: one compile per key in a process. The first caller of a
//! key (the leader) compiles and stores; the others wait for its result.

use crate::digest::Key;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use wasmtime::Error;

/// The leader's error, for its waiters: `wasmtime::Error` is not `Clone`,
/// so each waiter gets an error rebuilt from the messages of the leader's
/// chain, with the same chain (`{e:#}` and `Error::chain` show what the
/// leader's would), though not its types.
#[derive(Clone, Debug)]
pub(crate) struct ErrorChain(Vec<String>);

impl ErrorChain {
    pub(crate) fn of(error: &Error) -> ErrorChain {
        ErrorChain(error.chain().map(|e| e.to_string()).collect())
    }

    fn message(message: &str) -> ErrorChain {
        ErrorChain(vec![message.to_string()])
    }

    /// The error again, outermost message first.
    pub(crate) fn to_error(&self) -> Error {
        let mut messages = self.0.iter().rev();
        let root = messages.next().map_or("unknown error", String::as_str);
        messages.fold(Error::msg(root.to_string()), |error, outer| {
            error.context(outer.clone())
        })
    }
}

/// The compiles in progress in a process, by key.
pub(crate) type Inflight = Mutex<HashMap<Key, Arc<Flight>>>;

/// One compile in progress, and what its waiters are given.
#[derive(Default)]
pub(crate) struct Flight {
    result: Mutex<Option<Result<Arc<[u8]>, ErrorChain>>>,
    done: std::sync::Condvar,
}

impl Flight {
    pub(crate) fn wait(&self) -> Result<Arc<[u8]>, ErrorChain> {
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

/// The single-flight guard, the leader's side of a `Flight`: on drop (a
/// return or a panic), hands its result to the waiters and frees the key's
/// slot.
pub(crate) struct FlightGuard<'a> {
    pub(crate) inflight: &'a Inflight,
    pub(crate) key: &'a Key,
    pub(crate) flight: &'a Flight,
    pub(crate) result: Option<Result<Arc<[u8]>, ErrorChain>>,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let result = self.result.take().unwrap_or_else(|| {
            Err(ErrorChain::message(if std::thread::panicking() {
                "the thread compiling this module panicked"
            } else {
                "the store could not load or compile this module"
            }))
        });
        *self
            .flight
            .result
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(result);
        self.flight.done.notify_all();
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::error::Context;

    #[test]
    fn waiters_get_the_leaders_chain() {
        let leader: wasmtime::Result<()> = Err(wasmtime::format_err!("type mismatch"))
            .context("failed to parse the module")
            .context("compiling app.wasm");
        let leader = leader.unwrap_err();
        let waiter = ErrorChain::of(&leader).to_error();
        assert_eq!(format!("{waiter:#}"), format!("{leader:#}"));
        assert_eq!(format!("{waiter}"), "compiling app.wasm");
        assert_eq!(waiter.chain().count(), 3);
        assert_eq!(waiter.root_cause().to_string(), "type mismatch");
    }
}
