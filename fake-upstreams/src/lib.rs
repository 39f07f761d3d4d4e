//! Fakes of the 360dialog Hub, Signals API and X Ads API.
