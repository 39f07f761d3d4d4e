//! ConversionBridge: Signals events to hashed, batched X conversions.
