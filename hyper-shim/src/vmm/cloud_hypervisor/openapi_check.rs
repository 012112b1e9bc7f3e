//! Test support: checks JSON we send to (or read from) Cloud Hypervisor against its OpenAPI
//! schema, `cloud-hypervisor-openapi.yaml` in the team's shared reference directory
//! (`HYPER_CH_OPENAPI` names another copy). Field names, types, enums, minimums and required
//! fields are checked; a field the schema does not know is an error.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

pub struct Schema {
    doc: Yaml,
}

fn schema_path() -> PathBuf {
    std::env::var_os("HYPER_CH_OPENAPI")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/reference/cloud-hypervisor-openapi.yaml")
        })
}

impl Schema {
    pub fn load() -> Self {
        let path = schema_path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "read Cloud Hypervisor's OpenAPI schema {} ({e}); set HYPER_CH_OPENAPI to its path",
                path.display()
            )
        });
        Self {
            doc: serde_yaml::from_str(&text).expect("the OpenAPI schema parses"),
        }
    }

    fn component(&self, name: &str) -> &Yaml {
        let s = &self.doc["components"]["schemas"][name];
        assert!(!s.is_null(), "no schema {name} in the OpenAPI document");
        s
    }

    fn resolve<'a>(&'a self, schema: &'a Yaml) -> &'a Yaml {
        match schema.get("$ref").and_then(Yaml::as_str) {
            Some(r) => self.component(r.trim_start_matches("#/components/schemas/")),
            None => schema,
        }
    }

    /// Panics with every mismatch between `value` and schema `name`.
    pub fn check(&self, name: &str, value: &impl Serialize) {
        let json = serde_json::to_value(value).unwrap();
        let mut errors = Vec::new();
        self.validate(&json, self.component(name), name, &mut errors);
        assert!(
            errors.is_empty(),
            "{name} does not match the schema:\n{}\n{json:#}",
            errors.join("\n")
        );
    }

    /// The errors `value` has against schema `name` (for tests of the checker itself).
    pub fn errors(&self, name: &str, value: &Json) -> Vec<String> {
        let mut errors = Vec::new();
        self.validate(value, self.component(name), name, &mut errors);
        errors
    }

    fn validate(&self, v: &Json, schema: &Yaml, at: &str, errors: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if let Some(values) = schema.get("enum").and_then(Yaml::as_sequence) {
            let allowed: Vec<&str> = values.iter().filter_map(Yaml::as_str).collect();
            if !v.as_str().is_some_and(|s| allowed.contains(&s)) {
                errors.push(format!("{at}: {v} is not one of {allowed:?}"));
            }
        }
        let ty = schema.get("type").and_then(Yaml::as_str);
        match ty {
            Some("object") => self.validate_object(v, schema, at, errors),
            Some("array") => match v.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        self.validate(item, &schema["items"], &format!("{at}[{i}]"), errors);
                    }
                }
                None => errors.push(format!("{at}: {v} is not an array")),
            },
            Some("integer") => match v.as_i64().or_else(|| v.as_u64().map(|u| u as i64)) {
                Some(n) => {
                    if let Some(min) = schema.get("minimum").and_then(Yaml::as_i64)
                        && n < min
                    {
                        errors.push(format!("{at}: {n} is below the minimum {min}"));
                    }
                    let max = match schema.get("format").and_then(Yaml::as_str) {
                        Some("int16") => Some(i16::MAX as i64),
                        Some("uint8") => Some(u8::MAX as i64),
                        Some("int32") => Some(i32::MAX as i64),
                        _ => None,
                    };
                    if max.is_some_and(|m| n > m) {
                        errors.push(format!("{at}: {n} does not fit its format"));
                    }
                }
                None => errors.push(format!("{at}: {v} is not an integer")),
            },
            Some("string") if !v.is_string() => {
                errors.push(format!("{at}: {v} is not a string"));
            }
            Some("boolean") if !v.is_boolean() => {
                errors.push(format!("{at}: {v} is not a boolean"));
            }
            _ => {}
        }
    }

    fn validate_object(&self, v: &Json, schema: &Yaml, at: &str, errors: &mut Vec<String>) {
        let Some(object) = v.as_object() else {
            errors.push(format!("{at}: {v} is not an object"));
            return;
        };
        for required in schema
            .get("required")
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(Yaml::as_str)
        {
            if !object.contains_key(required) {
                errors.push(format!("{at}: required field {required} is missing"));
            }
        }
        for (key, value) in object {
            let field = format!("{at}.{key}");
            match schema.get("properties").and_then(|p| p.get(key.as_str())) {
                Some(s) => self.validate(value, s, &field, errors),
                None => match schema.get("additionalProperties") {
                    Some(s) if s.is_mapping() => self.validate(value, s, &field, errors),
                    _ => errors.push(format!("{field}: not a field of the schema")),
                },
            }
        }
    }

    /// Fields a response type reads must exist in its schema, and the ones the schema
    /// requires must be the ones the type requires.
    pub fn check_response_fields(&self, name: &str, reads: &[&str], requires: &[&str]) {
        let schema = self.component(name);
        for field in reads {
            assert!(
                !schema["properties"][*field].is_null(),
                "{name}.{field} is not in the schema"
            );
        }
        let mut required: Vec<&str> = schema
            .get("required")
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(Yaml::as_str)
            .collect();
        required.sort_unstable();
        let mut ours = requires.to_vec();
        ours.sort_unstable();
        assert_eq!(required, ours, "{name}: required fields");
    }

    /// The endpoint exists in the schema with that method.
    pub fn check_operation(&self, method: &str, path: &str) {
        let endpoint = path.trim_start_matches("/api/v1");
        let operation = &self.doc["paths"][endpoint][method.to_lowercase()];
        assert!(
            !operation.is_null(),
            "{method} {endpoint} is not in the OpenAPI schema"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The checker itself must catch what it is for, or the schema tests prove nothing.
    #[test]
    fn the_checker_catches_names_types_enums_and_required_fields() {
        let s = Schema::load();
        let ok = json!({"tag": "t", "socket": "/s", "num_queues": 1, "queue_size": 1024});
        assert_eq!(s.errors("FsConfig", &ok), Vec::<String>::new());
        let errors = s.errors(
            "FsConfig",
            &json!({"tag": "t", "sockett": "/s", "num_queues": "1", "queue_size": 1024}),
        );
        assert_eq!(
            errors,
            [
                "FsConfig: required field socket is missing",
                "FsConfig.num_queues: \"1\" is not an integer",
                "FsConfig.sockett: not a field of the schema",
            ]
        );
        assert_eq!(
            s.errors("VsockConfig", &json!({"cid": 2, "socket": "/v"})),
            ["VsockConfig.cid: 2 is below the minimum 3"]
        );
        assert_eq!(
            s.errors("SerialConfig", &json!({"mode": "Stdout"})),
            [
                "SerialConfig.mode: \"Stdout\" is not one of [\"Off\", \"Pty\", \"Tty\", \"File\", \"Socket\", \"Null\"]"
            ]
        );
        assert_eq!(
            s.errors("MemoryConfig", &json!({"shared": "yes"})),
            [
                "MemoryConfig: required field size is missing",
                "MemoryConfig.shared: \"yes\" is not a boolean"
            ]
        );
    }
}
