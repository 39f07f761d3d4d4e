//! HTTP clients for the 360dialog Hub, the Signals API and the X Ads API.
