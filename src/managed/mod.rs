//! The generic managed-resource reconciler (Crossplane's managed reconciler), written once and
//! used by every managed kind; `kinds/` holds one adapter per kind.

pub mod assertions;
pub mod controller;
pub mod credentials;
pub mod external;
pub mod kinds;
pub mod ownership;
pub mod reconciler;
pub mod references;
pub mod resource;
pub mod status;
