//! One adapter per managed kind: how its upstream object is read, created, updated and
//! deleted. The flow around them is the generic reconciler's (`crate::managed`).

pub mod ctwa_tracking;
pub mod signals_conversion_event;
pub mod signals_keyword;
pub mod signals_postback;
pub mod x_web_event_tag;
