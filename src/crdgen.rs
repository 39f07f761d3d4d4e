//! The CRDs as YAML, as `ctwa-operator crds` prints them and `crds/` stores them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::api::all_crds;

/// One YAML document per CRD, keyed by the file name it is stored under in `crds/`.
pub fn crd_files() -> anyhow::Result<Vec<(String, String)>> {
    all_crds()
        .iter()
        .map(|crd| Ok((file_name(crd), to_yaml(crd)?)))
        .collect()
}

/// Every CRD as one multi-document YAML stream.
pub fn crds_yaml() -> anyhow::Result<String> {
    Ok(crd_files()?
        .into_iter()
        .map(|(_, yaml)| yaml)
        .collect::<Vec<_>>()
        .join(""))
}

fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.spec.names.kind.to_lowercase())
}

fn to_yaml(crd: &CustomResourceDefinition) -> anyhow::Result<String> {
    Ok(format!("---\n{}", serde_saphyr::to_string(crd)?))
}
