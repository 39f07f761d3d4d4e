//! The six custom resource kinds of `ctwa.dev/v1alpha1` and the types they share.
//!
//! Validation lives in the schema (OpenAPI bounds, enums and CEL rules) so that `kubectl apply`
//! rejects a bad manifest before the operator ever sees it.

// Several `printcolumn(type_ = "string", ...)` entries look like duplicated attributes to clippy.
#![allow(clippy::duplicated_attributes)]

mod common;
mod conversion_bridge;
mod ctwa_tracking;
mod signals_conversion_event;
mod signals_keyword;
mod signals_postback;
mod x_web_event_tag;

pub use common::*;
pub use conversion_bridge::*;
pub use ctwa_tracking::*;
pub use signals_conversion_event::*;
pub use signals_keyword::*;
pub use signals_postback::*;
pub use x_web_event_tag::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD this operator serves, in a stable order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        CtwaTracking::crd(),
        SignalsKeyword::crd(),
        SignalsPostback::crd(),
        SignalsConversionEvent::crd(),
        XWebEventTag::crd(),
        ConversionBridge::crd(),
    ]
}
