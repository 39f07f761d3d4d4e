//! ConversionBridge: Signals events to hashed, batched X conversions.
pub mod identity;
