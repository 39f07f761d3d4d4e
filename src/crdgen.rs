//! The CRDs as YAML, as `ctwa-operator crds` prints them and `crds/` stores them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

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
    let mut value = serde_json::to_value(crd)?;
    unwrap_descriptions(&mut value);
    Ok(format!("---\n{}", serde_saphyr::to_string(&value)?))
}

/// Doc comments are wrapped at 100 columns in the source; `kubectl explain` wraps text
/// itself, so single line breaks become spaces (blank lines stay paragraph breaks).
fn unwrap_descriptions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    Value::String(text) if key == "description" => {
                        *text = text
                            .split("\n\n")
                            .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
                            .collect::<Vec<_>>()
                            .join("\n\n");
                    }
                    _ => unwrap_descriptions(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_crd_is_a_yaml_document_of_its_own() {
        let files = crd_files().unwrap();
        assert_eq!(files.len(), 6);
        for (name, yaml) in &files {
            assert!(yaml.starts_with("---\n"), "{name}");
            assert_eq!(
                yaml.matches("\n---").count(),
                0,
                "{name} holds one document"
            );
        }
    }

    #[test]
    fn descriptions_are_unwrapped_but_keep_paragraphs() {
        let mut v = serde_json::json!({"description": "one\ntwo\n\nthree", "x": [{"description": "a\n b"}]});
        unwrap_descriptions(&mut v);
        assert_eq!(v["description"], "one two\n\nthree");
        assert_eq!(v["x"][0]["description"], "a b");
    }
}
