//! Fencing and idempotency: which requests may run. [`Ledger`] decides (pure, no IO);
//! [`StateStore`] persists what must survive a restart (the highest accepted token and the ids of
//! recently started commands) before a command runs.

mod ledger;
mod state_file;

pub use ledger::{
    Admission, DEFAULT_HELD_RESULT_BYTES, Fence, Ledger, MAX_REMEMBERED, PersistedState,
};
pub use state_file::{STATE_FILE, StateError, StateStore};
