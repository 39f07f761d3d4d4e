//! The API reference (`docs/api.md`), generated from the CRDs that [`crate::crdgen`] produces,
//! so that it always says what the API server enforces: every field with its type, default,
//! validation (enums, bounds, patterns, CEL rules with their messages) and description.
//!
//! `make docs` regenerates the file (`CTWA_UPDATE_DOCS=1 cargo test --lib apidocs`); the test
//! `api_docs_are_in_sync` fails while it is out of date.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// `docs/api.md`.
pub fn api_reference_markdown() -> String {
    let crds: Vec<Value> = crate::crdgen::crd_files()
        .expect("the CRDs are generated from the Rust types and always serialise")
        .into_iter()
        .map(|(name, yaml)| {
            serde_saphyr::from_str(&yaml)
                .unwrap_or_else(|e| panic!("crdgen produced invalid YAML for {name}: {e}"))
        })
        .collect();
    let mut out = String::new();
    preamble(&mut out, &crds);
    for crd in &crds {
        kind_section(&mut out, crd);
    }
    out
}

fn preamble(out: &mut String, crds: &[Value]) {
    out.push_str(
        "# API reference\n\n\
         <!-- Generated from the CRD schemas by src/apidocs.rs: do not edit, run `make docs`. -->\n\n\
         Every kind of the operator, field by field, as the CRDs in [`crds/`](../crds/) define \
         them (they are generated from the Rust types in `src/api/` by `ctwa-operator crds`). \
         The descriptions are the ones `kubectl explain` prints.\n\n\
         - **Required**: the API server rejects an object without the field (when the field \
         that holds it is set).\n\
         - **Default**: filled in by the API server when the field is absent.\n\
         - **Validation** is enforced by the API server on `kubectl apply`, before the operator \
         sees the object: enums, lengths, bounds, patterns, and CEL rules \
         (`x-kubernetes-validations`), shown with the message `kubectl` prints when the rule \
         fails. A rule `self == oldSelf` makes a field immutable.\n\
         - `[]` in a path stands for every item of a list.\n\n\
         ## Kinds\n\n\
         | Kind | Short name | Plural | Group/version | Scope | Description |\n\
         |---|---|---|---|---|---|\n",
    );
    for crd in crds {
        let names = &crd["spec"]["names"];
        let kind = str_of(&names["kind"]);
        let _ = writeln!(
            out,
            "| [{kind}](#{anchor}) | {short} | `{plural}` | `{group}/{version}` | {scope} | {description} |",
            anchor = kind.to_lowercase(),
            short = list_of(&names["shortNames"])
                .iter()
                .map(|s| code(s))
                .collect::<Vec<_>>()
                .join(", "),
            plural = str_of(&names["plural"]),
            group = str_of(&crd["spec"]["group"]),
            version = str_of(&version(crd)["name"]),
            scope = str_of(&crd["spec"]["scope"]),
            description = cell(str_of(&schema(crd)["description"])),
        );
    }
    let categories: Vec<String> = crds
        .iter()
        .flat_map(|crd| list_of(&crd["spec"]["names"]["categories"]))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for category in &categories {
        let _ = writeln!(
            out,
            "\nCategory {}: `kubectl get {category} -A` lists every object of these kinds.",
            code(category),
        );
    }
    out.push('\n');
    out.push_str(
        "## Annotations\n\n\
         | Annotation | On | Meaning |\n\
         |---|---|---|\n\
         | `ctwa.dev/external-id` | SignalsKeyword, XWebEventTag | The upstream id (keyword id, \
         web event tag id). Set it to adopt an existing upstream object; the operator writes it \
         right after it creates one. An upstream object already managed by another object is \
         not adopted (reason `AlreadyManaged`). |\n\
         | `ctwa.dev/paused: \"true\"` | CtwaTracking, SignalsKeyword, SignalsPostback, \
         SignalsConversionEvent, XWebEventTag | No upstream calls for this object; `Ready` \
         keeps its last value and one `ReconcilePaused` Event is emitted. A deletion with \
         `deletionPolicy: Delete` waits until the object is unpaused or set to `Orphan` \
         (a SignalsConversionEvent's never waits: its deletion calls nothing upstream). (A \
         ConversionBridge has `spec.suspend` instead.) |\n\
         | `ctwa.dev/resync-interval` | CtwaTracking, SignalsKeyword, SignalsPostback, \
         SignalsConversionEvent, XWebEventTag | How often upstream is re-read to repair drift \
         for this object (`90s`, `10m`, `1h`), instead of `--resync-interval`; CtwaTracking \
         and SignalsConversionEvent, whose upstream cannot be read, are written again instead \
         (default `1h`). At least `10s`: a shorter value is raised to `10s`, and a value that \
         is not a duration gives the default; either gives one `InvalidAnnotation` Warning \
         Event. |\n\n\
         ## Conditions\n\n\
         Every kind reports the kstatus-compatible conditions `Ready`, `Reconciling` and `Stalled` \
         in `status.conditions` (a ConversionBridge adds `SourceHealthy` and `DestinationHealthy`). \
         Their reasons, also used for Kubernetes Events, are stable: `Available`, `Creating`, `Updating`, `Deleting`, \
         `SecretNotFound`, `InvalidCredentials`, `UpstreamRejected`, `UpstreamUnavailable`, \
         `RateLimited`, `DependencyNotReady`, `ReconcilePaused`, `Observed`, `NotFound`, \
         `AlreadyManaged` (another object manages the same upstream object), and `Suspended` \
         (ConversionBridge). `InvalidAnnotation` appears in Warning Events only (a \
         `ctwa.dev/*` annotation that could not be used as written). \
         [troubleshooting.md](troubleshooting.md) explains each reason and what to do about \
         it.\n",
    );
}

fn kind_section(out: &mut String, crd: &Value) {
    let names = &crd["spec"]["names"];
    let version = version(crd);
    let root = schema(crd);
    let kind = str_of(&names["kind"]);
    let _ = write!(
        out,
        "\n## {kind}\n\n\
         `apiVersion: {group}/{v}`, `kind: {kind}`, {scope}; plural `{plural}`, short names {short}.\n\n\
         {description}\n",
        group = str_of(&crd["spec"]["group"]),
        v = str_of(&version["name"]),
        scope = str_of(&crd["spec"]["scope"]).to_lowercase(),
        plural = str_of(&names["plural"]),
        short = list_of(&names["shortNames"])
            .iter()
            .map(|s| code(s))
            .collect::<Vec<_>>()
            .join(", "),
        description = text(str_of(&root["description"])),
    );

    if let Some(columns) = version["additionalPrinterColumns"].as_array() {
        out.push_str(
            "\n`kubectl get` columns:\n\n\
             | Column | Type | JSONPath | Shown |\n\
             |---|---|---|---|\n",
        );
        for column in columns {
            let shown = match column["priority"].as_i64().unwrap_or(0) {
                0 => "always".to_string(),
                _ => "with `-o wide`".to_string(),
            };
            let name = match column["description"].as_str() {
                Some(d) => format!("{} ({})", str_of(&column["name"]), cell(d)),
                None => str_of(&column["name"]).to_string(),
            };
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {shown} |",
                str_of(&column["type"]),
                code(str_of(&column["jsonPath"])),
            );
        }
    }

    let required = strings(&root["required"]);
    for part in ["spec", "status"] {
        let Some(schema) = root["properties"].get(part) else {
            continue;
        };
        let _ = write!(
            out,
            "\n### {kind} {part}\n\n\
             | Field | Type | Required | Default | Validation | Description |\n\
             |---|---|---|---|---|---|\n"
        );
        field_rows(out, part, schema, required.iter().any(|r| r == part));
    }
}

/// One table row for the field at `path`, then rows for everything inside it.
fn field_rows(out: &mut String, path: &str, schema: &Value, required: bool) {
    let mut validation = validations(schema);
    let mut description = str_of(&schema["description"]).to_string();
    let items = &schema["items"];
    let object_items = items["properties"].is_object();
    if items.is_object() && !object_items {
        // A list of scalars: the items' rules belong to this row.
        validation.extend(
            validations(items)
                .into_iter()
                .map(|v| format!("each item: {v}")),
        );
        if description.is_empty() {
            description = str_of(&items["description"]).to_string();
        }
    }
    let default = match schema.get("default") {
        Some(Value::String(s)) => code(s),
        Some(other) => code(&other.to_string()),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "| {} | {} | {} | {default} | {} | {} |",
        code(path),
        type_name(schema),
        if required { "yes" } else { "no" },
        validation.join("<br>"),
        cell(&description),
    );
    let (children, child_prefix) = if object_items {
        (items, format!("{path}[]"))
    } else {
        (schema, path.to_string())
    };
    if let Some(properties) = children["properties"].as_object() {
        let required = strings(&children["required"]);
        for (name, child) in sorted(properties) {
            field_rows(
                out,
                &format!("{child_prefix}.{name}"),
                child,
                required.iter().any(|r| r == name),
            );
        }
    }
}

fn sorted(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

fn type_name(schema: &Value) -> String {
    if schema["x-kubernetes-int-or-string"].as_bool() == Some(true) {
        return "int or string".into();
    }
    let base = match schema["type"].as_str() {
        Some("array") => return format!("[]{}", type_name(&schema["items"])),
        Some("object") if schema["additionalProperties"].is_object() => {
            return format!("map[string]{}", type_name(&schema["additionalProperties"]));
        }
        Some(t) => t.to_string(),
        None => "any".to_string(),
    };
    match schema["format"].as_str() {
        Some(format) => format!("{base} ({format})"),
        None => base,
    }
}

/// Everything the API server checks about one value, in a fixed order.
fn validations(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .map(|v| match v {
                Value::String(s) => code(s),
                other => code(&number_or_json(other)),
            })
            .collect();
        out.push(format!("one of {}", values.join(", ")));
    }
    if let Some(range) = range(schema, "minLength", "maxLength") {
        out.push(format!("length {range}"));
    }
    if let Some(range) = range(schema, "minimum", "maximum") {
        out.push(format!("value {range}"));
    }
    if let Some(range) = range(schema, "minItems", "maxItems") {
        out.push(format!("items {range}"));
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        out.push(format!("pattern {}", code(pattern)));
    }
    if schema["uniqueItems"].as_bool() == Some(true) {
        out.push("items unique".into());
    }
    match schema["x-kubernetes-list-type"].as_str() {
        Some("set") => out.push("items unique (list type `set`)".into()),
        Some("map") => out.push(format!(
            "one item per {} (list type `map`)",
            strings(&schema["x-kubernetes-list-map-keys"])
                .iter()
                .map(|k| code(k))
                .collect::<Vec<_>>()
                .join(" + ")
        )),
        _ => {}
    }
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let expression = str_of(&rule["rule"]);
        let mut line = if expression == "self == oldSelf" {
            format!("immutable: CEL {}", code(expression))
        } else {
            format!("CEL {}", code(expression))
        };
        if let Some(message) = rule["message"].as_str() {
            let _ = write!(line, " — “{}”", cell(message));
        }
        if let Some(expression) = rule["messageExpression"].as_str() {
            let _ = write!(line, " — message from {}", code(expression));
        }
        if let Some(field) = rule["fieldPath"].as_str() {
            let _ = write!(line, " (reported on {})", code(field));
        }
        out.push(line);
    }
    out
}

/// `1..128`, `≥ 5`, `≤ 20`, or nothing.
fn range(schema: &Value, min: &str, max: &str) -> Option<String> {
    let bound = |key: &str| schema.get(key).map(number_or_json);
    match (bound(min), bound(max)) {
        (Some(lo), Some(hi)) => Some(format!("{lo}..{hi}")),
        (Some(lo), None) => Some(format!("≥ {lo}")),
        (None, Some(hi)) => Some(format!("≤ {hi}")),
        (None, None) => None,
    }
}

/// Whole numbers without a fraction (`500`, not `500.0`); anything else as JSON.
fn number_or_json(value: &Value) -> String {
    match value.as_f64() {
        Some(f) if value.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => value.to_string(),
    }
}

fn version(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]
}

fn schema(crd: &Value) -> &Value {
    &version(crd)["schema"]["openAPIV3Schema"]
}

fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

fn strings(value: &Value) -> Vec<String> {
    list_of(value)
}

fn list_of(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

/// An inline code span holding `s` verbatim, safe inside a table cell.
fn code(s: &str) -> String {
    let s = s.replace('|', "\\|");
    // A fence longer than any backtick run inside; padded when the content touches it.
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    if longest > 0 {
        format!("{fence} {s} {fence}")
    } else {
        format!("{fence}{s}{fence}")
    }
}

/// Description text for a paragraph: code spans (`...`) kept, `<`, `>` and `&` elsewhere
/// escaped so that Markdown does not take `<namespace>` for an HTML tag.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, part) in s.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        if i % 2 == 1 {
            out.push_str(part);
        } else {
            out.push_str(
                &part
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;"),
            );
        }
    }
    out
}

/// Description text for a table cell: as [`text`], on one line, with `|` escaped.
fn cell(s: &str) -> String {
    text(s)
        .replace('|', "\\|")
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("<br><br>")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "docs/api.md";

    #[test]
    fn api_docs_are_in_sync() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(DOC);
        let generated = api_reference_markdown();
        if std::env::var("CTWA_UPDATE_DOCS").as_deref() == Ok("1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &generated).unwrap();
            return;
        }
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == generated {
            return;
        }
        let first_difference = current
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| current.lines().count().min(generated.lines().count()));
        let line = |text: &str| {
            text.lines()
                .nth(first_difference)
                .unwrap_or("<end of file>")
                .to_string()
        };
        panic!(
            "{DOC} is out of date with the CRD schemas: run `make docs` \
             (or `CTWA_UPDATE_DOCS=1 cargo test --lib apidocs`) and commit the result.\n\
             first difference at line {}:\n  {DOC}: {}\n  generated:   {}",
            first_difference + 1,
            line(&current),
            line(&generated),
        );
    }

    /// Every property of every schema has its row.
    #[test]
    fn every_field_is_documented() {
        fn paths(prefix: &str, schema: &Value, out: &mut Vec<String>) {
            out.push(prefix.to_string());
            let (children, prefix) = if schema["items"]["properties"].is_object() {
                (&schema["items"], format!("{prefix}[]"))
            } else {
                (schema, prefix.to_string())
            };
            for (name, child) in children["properties"].as_object().into_iter().flatten() {
                paths(&format!("{prefix}.{name}"), child, out);
            }
        }
        let markdown = api_reference_markdown();
        for crd in crate::api::all_crds() {
            let crd = serde_json::to_value(&crd).unwrap();
            let kind = str_of(&crd["spec"]["names"]["kind"]).to_string();
            assert!(markdown.contains(&format!("\n## {kind}\n")), "{kind}");
            let mut all = Vec::new();
            for part in ["spec", "status"] {
                paths(part, &schema(&crd)["properties"][part], &mut all);
            }
            assert!(all.len() > 10, "{kind}: {all:?}");
            for path in all {
                assert!(
                    markdown.contains(&format!("| `{path}` |")),
                    "{kind}: no row for {path}"
                );
            }
        }
    }

    #[test]
    fn validation_is_rendered() {
        let markdown = api_reference_markdown();
        for expected in [
            "immutable: CEL `self == oldSelf` — “partnerId is immutable”",
            "CEL `self.viewThroughWindow <= self.clickWindow` — “viewThroughWindow must be less than or equal to clickWindow”",
            "one of `1`, `7`, `14`, `30`",
            "value 1..500",
            "length 1..128",
            "pattern `^[A-Za-z0-9_-]+$`",
            "each item: one of `button`, `button_reply`",
            "| `spec.batching.maxBatchSize` | integer (int32) | no | `500` |",
            "`has(self.eventId) != has(self.eventTagRef)`",
            "| `spec.source.signals.pollInterval` | string | no | `60s` |",
            "`!has(self.url) \\|\\| !self.url.lowerAscii().startsWith('http://') \\|\\| self.allowInsecureUrl`",
        ] {
            assert!(markdown.contains(expected), "missing: {expected}");
        }
    }

    #[test]
    fn markdown_escaping() {
        assert_eq!(code("a|b"), "`a\\|b`");
        assert_eq!(code("x`y"), "`` x`y ``");
        assert_eq!(
            cell("at /p/<ns>/ `<ns>` a|b\nc\n\nd"),
            "at /p/&lt;ns&gt;/ `<ns>` a\\|b c<br><br>d"
        );
        assert_eq!(number_or_json(&serde_json::json!(500.0)), "500");
        assert_eq!(number_or_json(&serde_json::json!(0.5)), "0.5");
        assert_eq!(number_or_json(&serde_json::json!(7)), "7");
    }
}
