//! What every controller shares, whatever it reconciles.

pub mod backoff;
