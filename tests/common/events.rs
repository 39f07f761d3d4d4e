//! Signals events for the bridge tests, and what X must receive for them: they live in
//! `ctwa_testenv::events`, shared with the benches.

pub use ctwa_testenv::events::*;
