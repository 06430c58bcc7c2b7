//! An official API contract as a checker of requests and responses, for the fakes that stand
//! in for Azure DNS and Google Cloud DNS (no emulator of either installs here).
//!
//! Two contract formats are read: OpenAPI 2.0 (Azure's `azure-dns-2018-05-01.json`) and a
//! Google API discovery document (`gcp-dns-v1-discovery.json`). Both become one list of
//! operations (method, path template, parameters, request and response body schemas) and one
//! set of JSON Schema definitions, checked with the `jsonschema` crate.
//!
//! The checks are stricter than the services in one way, on purpose: an object schema with
//! `properties` accepts no other property, so a misspelt field (`ttl` for Azure's `TTL`) fails
//! the test instead of being silently ignored.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    Path,
    Query,
    Header,
}

/// One declared parameter (not the body).
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub location: In,
    pub required: bool,
    /// `string`, `integer`, `boolean`, `number`.
    pub kind: String,
    pub allowed: Option<Vec<String>>,
}

/// One operation of the contract.
#[derive(Debug, Clone)]
pub struct Operation {
    /// `RecordSets_CreateOrUpdate`, `dns.changes.create`.
    pub id: String,
    pub method: String,
    pub template: String,
    pattern: regex::Regex,
    pub params: Vec<Param>,
    /// The request body's definition, and whether the body is required.
    pub request: Option<(String, bool)>,
    /// Declared statuses and their body's definition; `None` key: the `default` response.
    pub responses: BTreeMap<Option<u16>, Option<String>>,
    /// Query parameters the client may send back because the server put them in a next-page
    /// link (Azure's `x-ms-pageable`: `$skipToken`).
    paging: Vec<String>,
}

/// A request or response the contract does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A request as the fake received it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path without the query, percent-decoded.
    pub path: &'a str,
    pub query: &'a [(String, String)],
    /// Header names in lower case.
    pub headers: &'a [(String, String)],
    pub body: Option<&'a Value>,
}

/// A request that matched an operation: which one, and its path parameters.
#[derive(Debug, Clone)]
pub struct Matched<'c> {
    pub operation: &'c Operation,
    pub path_params: HashMap<String, String>,
}

pub struct Contract {
    pub title: String,
    /// Azure: `info.version`, which every request's `api-version` must equal.
    pub api_version: Option<String>,
    operations: Vec<Operation>,
    /// Global query parameters every operation accepts (discovery's `parameters`).
    global_query: Vec<Param>,
    definitions: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// The official contracts the fakes check, as shipped in tests/fixtures/contracts.
const AZURE_DNS: &str = include_str!("../../tests/fixtures/contracts/azure-dns-2018-05-01.json");
const GOOGLE_DNS: &str = include_str!("../../tests/fixtures/contracts/gcp-dns-v1-discovery.json");
/// Azure Compute's scale set operations: an excerpt of four files of the azure-rest-api-specs
/// tree, kept at their relative paths so that their `$ref`s resolve as in the repository (see
/// tests/fixtures/README.md for what was kept).
const AZURE_COMPUTE_MAIN: &str = "compute/resource-manager/Microsoft.Compute/ComputeRP/stable/2024-07-01/virtualMachineScaleSet.json";
const AZURE_COMPUTE: [(&str, &str); 4] = [
    (
        AZURE_COMPUTE_MAIN,
        include_str!(
            "../../tests/fixtures/contracts/azure-compute-2024-07-01/compute/resource-manager/Microsoft.Compute/ComputeRP/stable/2024-07-01/virtualMachineScaleSet.json"
        ),
    ),
    (
        "compute/resource-manager/Microsoft.Compute/ComputeRP/stable/2024-07-01/computeRPCommon.json",
        include_str!(
            "../../tests/fixtures/contracts/azure-compute-2024-07-01/compute/resource-manager/Microsoft.Compute/ComputeRP/stable/2024-07-01/computeRPCommon.json"
        ),
    ),
    (
        "compute/resource-manager/Microsoft.Compute/common-types/v1/common.json",
        include_str!(
            "../../tests/fixtures/contracts/azure-compute-2024-07-01/compute/resource-manager/Microsoft.Compute/common-types/v1/common.json"
        ),
    ),
    (
        "common-types/resource-management/v5/types.json",
        include_str!(
            "../../tests/fixtures/contracts/azure-compute-2024-07-01/common-types/resource-management/v5/types.json"
        ),
    ),
];
const GOOGLE_COMPUTE: &str =
    include_str!("../../tests/fixtures/contracts/gcp-compute-v1-subset.json");

impl Contract {
    /// Azure DNS, api-version 2018-05-01 (OpenAPI 2.0, from Azure/azure-rest-api-specs).
    pub fn azure_dns() -> Contract {
        let doc = serde_json::from_str(AZURE_DNS).expect("the Azure DNS contract is JSON");
        Contract::openapi2(&doc).expect("the Azure DNS contract reads")
    }

    /// Azure Compute, api-version 2024-07-01: the scale set operations cairn calls (Get, List,
    /// Update), and ARM's `OperationStatusResult` for the answers of long-running operations.
    pub fn azure_compute() -> Contract {
        let files: Vec<(&str, Value)> = AZURE_COMPUTE
            .iter()
            .map(|(path, text)| {
                let doc = serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("the Azure Compute contract {path} is JSON: {e}"));
                (*path, doc)
            })
            .collect();
        Contract::openapi2_files(AZURE_COMPUTE_MAIN, &files)
            .expect("the Azure Compute contract reads")
    }

    /// Google Cloud DNS v1 (its discovery document).
    pub fn google_dns() -> Contract {
        let doc = serde_json::from_str(GOOGLE_DNS).expect("the Cloud DNS contract is JSON");
        Contract::discovery(&doc).expect("the Cloud DNS contract reads")
    }

    /// The Compute Engine v1 methods cairn calls (regional instance groups, health checks,
    /// operations), cut unchanged from the discovery document by `extract-compute.py`.
    pub fn google_compute() -> Contract {
        let doc = serde_json::from_str(GOOGLE_COMPUTE).expect("the Compute contract is JSON");
        Contract::discovery(&doc).expect("the Compute contract reads")
    }

    /// Reads an OpenAPI 2.0 document (Azure REST API specs).
    pub fn openapi2(doc: &Value) -> Result<Contract, String> {
        let shared = doc.get("parameters").cloned().unwrap_or(json!({}));
        let mut operations = Vec::new();
        let paths = doc["paths"].as_object().ok_or("no `paths`")?;
        for (template, item) in paths {
            let item = item.as_object().ok_or("a path item is not an object")?;
            for (method, op) in item {
                if method == "parameters" {
                    continue;
                }
                let mut params = Vec::new();
                let mut request = None;
                for p in op["parameters"].as_array().into_iter().flatten() {
                    let p = match p.get("$ref").and_then(Value::as_str) {
                        Some(r) => {
                            let name = r.trim_start_matches("#/parameters/");
                            &shared[name]
                        }
                        None => p,
                    };
                    let required = p["required"].as_bool().unwrap_or(false);
                    let location = match p["in"].as_str() {
                        Some("path") => In::Path,
                        Some("query") => In::Query,
                        Some("header") => In::Header,
                        Some("body") => {
                            let def = schema_ref(&p["schema"])
                                .ok_or_else(|| format!("{template}: body without $ref"))?;
                            request = Some((def, required));
                            continue;
                        }
                        other => return Err(format!("{template}: parameter in {other:?}")),
                    };
                    params.push(Param {
                        name: p["name"].as_str().unwrap_or_default().to_string(),
                        location,
                        // Path parameters are always required.
                        required: required || location == In::Path,
                        kind: p["type"].as_str().unwrap_or("string").to_string(),
                        allowed: strings(&p["enum"]),
                    });
                }
                let mut responses = BTreeMap::new();
                for (status, r) in op["responses"].as_object().into_iter().flatten() {
                    let key = if status == "default" {
                        None
                    } else {
                        Some(status.parse().map_err(|_| format!("status {status}"))?)
                    };
                    responses.insert(key, schema_ref(&r["schema"]));
                }
                let paging = if op.get("x-ms-pageable").is_some() {
                    vec!["$skipToken".to_string()]
                } else {
                    Vec::new()
                };
                let base = doc["basePath"].as_str().unwrap_or("");
                operations.push(Operation {
                    id: op["operationId"].as_str().unwrap_or_default().to_string(),
                    method: method.to_uppercase(),
                    template: format!("{base}{template}"),
                    pattern: path_pattern(&format!("{base}{template}"))?,
                    params,
                    request,
                    responses,
                    paging,
                });
            }
        }
        let mut definitions = doc["definitions"].clone();
        normalize_definitions(&mut definitions, |r| r.to_string());
        Ok(Contract {
            title: doc["info"]["title"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            api_version: doc["info"]["version"].as_str().map(str::to_string),
            operations,
            global_query: Vec::new(),
            definitions,
            validators: Mutex::new(HashMap::new()),
        })
    }

    /// Reads an OpenAPI 2.0 contract split over several files, as Azure's specs are: `files`
    /// are (path, document) with paths relative to one root, `main` the one whose `paths` are
    /// served. The definitions and parameters of every file go into one namespace and every
    /// `$ref` (`../../../common-types/v1/common.json#/definitions/Resource`) becomes a local
    /// one (`#/definitions/Resource`). A name defined in two files, or a `$ref` to a file or a
    /// name not given, is an error rather than a schema that silently accepts anything.
    pub fn openapi2_files(main: &str, files: &[(&str, Value)]) -> Result<Contract, String> {
        let mut owner: BTreeMap<(&str, String), &str> = BTreeMap::new();
        for (path, doc) in files {
            for section in ["definitions", "parameters"] {
                for name in doc[section]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k)
                {
                    if let Some(first) = owner.insert((section, name.clone()), path) {
                        return Err(format!("{section} `{name}` is in both {first} and {path}"));
                    }
                }
            }
        }
        let mut merged = files
            .iter()
            .find(|(p, _)| *p == main)
            .map(|(_, d)| d.clone())
            .ok_or_else(|| format!("{main} is not among the files"))?;
        let mut definitions = Map::new();
        let mut parameters = Map::new();
        for (path, doc) in files {
            let mut doc = doc.clone();
            localize_refs(&mut doc, path, &owner)?;
            for (section, into) in [
                ("definitions", &mut definitions),
                ("parameters", &mut parameters),
            ] {
                into.extend(doc[section].as_object().cloned().unwrap_or_default());
            }
            if *path == main {
                merged["paths"] = doc["paths"].take();
            }
        }
        merged["definitions"] = Value::Object(definitions);
        merged["parameters"] = Value::Object(parameters);
        Contract::openapi2(&merged)
    }

    /// Reads a Google API discovery document.
    pub fn discovery(doc: &Value) -> Result<Contract, String> {
        let mut operations = Vec::new();
        collect_methods(
            doc.get("resources").unwrap_or(&Value::Null),
            doc["servicePath"].as_str().unwrap_or(""),
            &mut operations,
        )?;
        let global_query = doc["parameters"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, p)| discovery_param(name, p))
            .collect();
        let mut definitions = doc["schemas"].clone();
        normalize_definitions(&mut definitions, |r| format!("#/definitions/{r}"));
        Ok(Contract {
            title: doc["title"].as_str().unwrap_or_default().to_string(),
            api_version: None,
            operations,
            global_query,
            definitions,
            validators: Mutex::new(HashMap::new()),
        })
    }

    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// The operation `request` is, if the contract allows it as sent.
    pub fn check_request<'c>(&'c self, request: &Request<'_>) -> Result<Matched<'c>, Violation> {
        let candidates: Vec<(&Operation, HashMap<String, String>)> = self
            .operations
            .iter()
            .filter(|op| op.method == request.method)
            .filter_map(|op| {
                let caps = op.pattern.captures(request.path)?;
                let params = op
                    .pattern
                    .capture_names()
                    .flatten()
                    .filter_map(|n| Some((n.to_string(), caps.name(n)?.as_str().to_string())))
                    .collect();
                Some((op, params))
            })
            .collect();
        // The most specific template wins: `.../rrsets/{name}/{type}` over `{+name}`.
        let (operation, path_params) = candidates
            .into_iter()
            .max_by_key(|(op, _)| literal_len(&op.template))
            .ok_or_else(|| {
                Violation(format!(
                    "{} {}: no operation of {} has this method and path",
                    request.method, request.path, self.title
                ))
            })?;
        let fail = |what: String| Violation(format!("{} ({}): {what}", operation.id, request.path));

        for p in &operation.params {
            let value = match p.location {
                In::Path => path_params.get(&p.name).map(String::as_str),
                In::Query => lookup(request.query, &p.name),
                In::Header => lookup(request.headers, &p.name.to_lowercase()),
            };
            match value {
                None if p.required => {
                    return Err(fail(format!(
                        "required {:?} parameter `{}` missing",
                        p.location, p.name
                    )));
                }
                None => {}
                Some(v) => check_param(p, v).map_err(fail)?,
            }
        }
        for (name, value) in request.query {
            let declared = operation
                .params
                .iter()
                .chain(&self.global_query)
                .find(|p| p.location == In::Query && &p.name == name);
            match declared {
                Some(p) => check_param(p, value).map_err(fail)?,
                None if operation.paging.contains(name) => {}
                None => {
                    return Err(fail(format!(
                        "query parameter `{name}` is not in the contract"
                    )));
                }
            }
        }
        if let (Some(want), Some(got)) = (&self.api_version, lookup(request.query, "api-version"))
            && want != got
        {
            return Err(fail(format!("api-version {got}, the contract is {want}")));
        }
        match (&operation.request, request.body) {
            (Some((def, _)), Some(body)) => self.check_body(def, body).map_err(fail)?,
            (Some((def, true)), None) => return Err(fail(format!("a {def} body is required"))),
            (None, Some(_)) => return Err(fail("this operation takes no body".into())),
            _ => {}
        }
        if request.body.is_some() {
            let json = lookup(request.headers, "content-type")
                .is_some_and(|c| c.starts_with("application/json"));
            if !json {
                return Err(fail(
                    "a JSON body needs `content-type: application/json`".into(),
                ));
            }
        }
        Ok(Matched {
            operation,
            path_params,
        })
    }

    /// Whether `operation` may answer `status` with `body`.
    pub fn check_response(
        &self,
        operation: &Operation,
        status: u16,
        body: Option<&Value>,
    ) -> Result<(), Violation> {
        let fail = |what: String| Violation(format!("{} response {status}: {what}", operation.id));
        let declared = operation.responses.get(&Some(status));
        let schema = match declared {
            Some(schema) => schema,
            // Errors fall to `default`; a success status must be declared.
            None if status >= 400 && operation.responses.contains_key(&None) => {
                &operation.responses[&None]
            }
            None => return Err(fail("status not declared".into())),
        };
        match (schema, body) {
            (Some(def), Some(body)) => self.check_body(def, body).map_err(fail),
            (Some(def), None) => Err(fail(format!("a {def} body is declared"))),
            (None, _) => Ok(()),
        }
    }

    /// Checks `value` against the named definition.
    pub fn check_body(&self, definition: &str, value: &Value) -> Result<(), String> {
        let validator = self.validator(definition)?;
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|e| format!("{} at `{}`", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "body is not a valid {definition}: {}",
                errors.join("; ")
            ))
        }
    }

    fn validator(&self, definition: &str) -> Result<Arc<jsonschema::Validator>, String> {
        let mut cache = self.validators.lock().expect("validators");
        if let Some(v) = cache.get(definition) {
            return Ok(v.clone());
        }
        if self.definitions.get(definition).is_none() {
            return Err(format!("no definition `{definition}` in the contract"));
        }
        let schema = json!({
            "definitions": self.definitions,
            "allOf": [{ "$ref": format!("#/definitions/{definition}") }],
        });
        let v =
            Arc::new(jsonschema::draft4::new(&schema).map_err(|e| format!("{definition}: {e}"))?);
        cache.insert(definition.to_string(), v.clone());
        Ok(v)
    }
}

/// Rewrites every `$ref` in `value` (found in the file `path`) to `#/SECTION/NAME`, checking
/// that the file it names is given and defines the name. Examples (`x-ms-examples`) are not
/// schemas and are left as they are.
fn localize_refs(
    value: &mut Value,
    path: &str,
    owner: &BTreeMap<(&str, String), &str>,
) -> Result<(), String> {
    match value {
        Value::Object(obj) => {
            if let Some(Value::String(r)) = obj.get_mut("$ref") {
                let (file, pointer) = r.split_once('#').unwrap_or((r.as_str(), ""));
                let target = if file.is_empty() {
                    path.to_string()
                } else {
                    join_relative(path, file)
                };
                let (section, name) = pointer
                    .trim_start_matches('/')
                    .split_once('/')
                    .ok_or_else(|| format!("{path}: `$ref` {r} names no definition"))?;
                let section = match section {
                    "definitions" => "definitions",
                    "parameters" => "parameters",
                    other => return Err(format!("{path}: `$ref` {r} into `{other}`")),
                };
                match owner.get(&(section, name.to_string())) {
                    Some(defined) if *defined == target => {
                        *r = format!("#/{section}/{name}");
                    }
                    _ => {
                        return Err(format!(
                            "{path}: `$ref` {r}: {target} is not given or lacks it"
                        ));
                    }
                }
            }
            for (key, inner) in obj.iter_mut() {
                if key != "x-ms-examples" {
                    localize_refs(inner, path, owner)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|v| localize_refs(v, path, owner)),
        _ => Ok(()),
    }
}

/// `relative` (`../x/y.json`, `./z.json`) resolved against the directory of `from`.
fn join_relative(from: &str, relative: &str) -> String {
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for segment in relative.split('/') {
        match segment {
            "." | "" => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

fn lookup<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn check_param(p: &Param, value: &str) -> Result<(), String> {
    let ok = match p.kind.as_str() {
        "integer" => value.parse::<i64>().is_ok(),
        "number" => value.parse::<f64>().is_ok(),
        "boolean" => matches!(value, "true" | "false"),
        _ => true,
    };
    if !ok {
        return Err(format!("`{}` = `{value}` is not a {}", p.name, p.kind));
    }
    if let Some(allowed) = &p.allowed
        && !allowed.iter().any(|a| a == value)
    {
        return Err(format!(
            "`{}` = `{value}` is not one of {}",
            p.name,
            allowed.join(", ")
        ));
    }
    Ok(())
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    })
}

/// The definition name a `{"$ref": "#/definitions/X"}` schema names.
fn schema_ref(schema: &Value) -> Option<String> {
    schema
        .get("$ref")?
        .as_str()
        .map(|r| r.trim_start_matches("#/definitions/").to_string())
}

/// Characters of a template outside its `{…}` variables: more is more specific.
fn literal_len(template: &str) -> usize {
    let mut depth = 0;
    template
        .chars()
        .filter(|c| {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => return depth == 0,
            }
            false
        })
        .count()
}

/// `/a/{b}/c{+d}` → `^/a/(?P<b>[^/]+)/c(?P<d>.+)$`: `{x}` is one segment, `{+x}` (RFC 6570
/// reserved expansion) may span several.
fn path_pattern(template: &str) -> Result<regex::Regex, String> {
    let mut re = String::from("^");
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        re.push_str(&regex::escape(&rest[..open]));
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in {template}"))?
            + open;
        let var = &rest[open + 1..close];
        let (name, any) = match var.strip_prefix('+') {
            Some(n) => (n, ".+"),
            None => (var, "[^/]+"),
        };
        // Regex group names must be identifiers.
        let group: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        re.push_str(&format!("(?P<{group}>{any})"));
        rest = &rest[close + 1..];
    }
    re.push_str(&regex::escape(rest));
    re.push('$');
    regex::Regex::new(&re).map_err(|e| format!("{template}: {e}"))
}

fn discovery_param(name: &str, p: &Value) -> Param {
    Param {
        name: name.to_string(),
        location: match p["location"].as_str() {
            Some("path") => In::Path,
            _ => In::Query,
        },
        required: p["required"].as_bool().unwrap_or(false),
        kind: p["type"].as_str().unwrap_or("string").to_string(),
        allowed: strings(&p["enum"]),
    }
}

fn collect_methods(
    resources: &Value,
    service_path: &str,
    out: &mut Vec<Operation>,
) -> Result<(), String> {
    for resource in resources.as_object().into_iter().flatten().map(|(_, r)| r) {
        for m in resource["methods"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, m)| m)
        {
            let template = format!("/{service_path}{}", m["path"].as_str().unwrap_or(""));
            let params = m["parameters"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, p)| discovery_param(name, p))
                .collect();
            let mut responses = BTreeMap::new();
            let status = if m["httpMethod"] == "DELETE" && m["response"].is_null() {
                204
            } else {
                200
            };
            responses.insert(
                Some(status),
                m["response"]["$ref"].as_str().map(str::to_string),
            );
            // Errors: Google's error envelope, which the document does not describe.
            responses.insert(None, None);
            out.push(Operation {
                id: m["id"].as_str().unwrap_or_default().to_string(),
                method: m["httpMethod"].as_str().unwrap_or_default().to_string(),
                pattern: path_pattern(&template)?,
                template,
                params,
                request: m["request"]["$ref"].as_str().map(|r| (r.to_string(), true)),
                responses,
                paging: Vec::new(),
            });
        }
        collect_methods(&resource["resources"], service_path, out)?;
    }
    Ok(())
}

/// Makes a contract's definitions checkable by a draft-4 validator: `$ref`s point into
/// `#/definitions`, `allOf` parents are merged into the child (so that the added
/// `additionalProperties: false` sees every property), and objects with `properties` take no
/// others.
fn normalize_definitions(definitions: &mut Value, reference: impl Fn(&str) -> String + Copy) {
    let snapshot = definitions.clone();
    if let Some(defs) = definitions.as_object_mut() {
        for schema in defs.values_mut() {
            normalize(schema, &snapshot, reference);
        }
    }
}

fn normalize(schema: &mut Value, all: &Value, reference: impl Fn(&str) -> String + Copy) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        let r = reference(r);
        obj.clear();
        obj.insert("$ref".into(), Value::String(r));
        return;
    }
    if let Some(Value::Array(parents)) = obj.remove("allOf") {
        for parent in parents {
            let parent = parent
                .get("$ref")
                .and_then(Value::as_str)
                .map(|r| r.trim_start_matches("#/definitions/"))
                .and_then(|name| all.get(name))
                .cloned()
                .unwrap_or(parent);
            merge_properties(obj, &parent);
        }
    }
    // Discovery-only keywords a draft-4 validator would misread or ignore.
    obj.remove("id");
    if obj.get("type").and_then(Value::as_str) == Some("any") {
        obj.remove("type");
    }
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        for p in props.values_mut() {
            normalize(p, all, reference);
        }
        if !obj.contains_key("additionalProperties") {
            obj.insert("additionalProperties".into(), Value::Bool(false));
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner @ Value::Object(_)) = obj.get_mut(key) {
            normalize(inner, all, reference);
        }
    }
}

fn merge_properties(child: &mut Map<String, Value>, parent: &Value) {
    for (key, value) in parent.as_object().into_iter().flatten() {
        match (key.as_str(), child.get_mut(key)) {
            ("properties", Some(Value::Object(mine))) => {
                for (k, v) in value.as_object().into_iter().flatten() {
                    mine.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            ("required", Some(Value::Array(mine))) => {
                for r in value.as_array().into_iter().flatten() {
                    if !mine.contains(r) {
                        mine.push(r.clone());
                    }
                }
            }
            (_, None) => {
                child.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/contracts/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn azure() -> Contract {
        Contract::azure_dns()
    }

    fn google() -> Contract {
        Contract::google_dns()
    }

    const ZONE: &str =
        "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Network/dnsZones/example.com";

    fn json_headers() -> Vec<(String, String)> {
        vec![("content-type".into(), "application/json".into())]
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn azures_own_example_put_is_allowed_and_its_response_too() {
        let c = azure();
        let example = load("azure-examples/CreateOrUpdateARecordset.json");
        let body = &example["parameters"]["parameters"];
        let path = format!("{ZONE}/A/record1");
        let query = q(&[("api-version", "2018-05-01")]);
        let headers = json_headers();
        let m = c
            .check_request(&Request {
                method: "PUT",
                path: &path,
                query: &query,
                headers: &headers,
                body: Some(body),
            })
            .unwrap();
        assert_eq!(m.operation.id, "RecordSets_CreateOrUpdate");
        assert_eq!(m.path_params["recordType"], "A");
        assert_eq!(m.path_params["relativeRecordSetName"], "record1");
        let created = &example["responses"]["201"]["body"];
        c.check_response(m.operation, 201, Some(created)).unwrap();
        assert!(c.check_response(m.operation, 202, None).is_err());
    }

    #[test]
    fn a_misspelt_field_a_wrong_api_version_or_an_unknown_query_fails() {
        let c = azure();
        let path = format!("{ZONE}/A/www");
        let headers = json_headers();
        let good =
            json!({ "properties": { "TTL": 60, "ARecords": [{ "ipv4Address": "192.0.2.1" }] } });
        let bad =
            json!({ "properties": { "ttl": 60, "ARecords": [{ "ipv4Address": "192.0.2.1" }] } });
        let put = |query: &[(String, String)], body: &Value| {
            c.check_request(&Request {
                method: "PUT",
                path: &path,
                query,
                headers: &headers,
                body: Some(body),
            })
            .map(|m| m.operation.id.clone())
        };
        let v = q(&[("api-version", "2018-05-01")]);
        assert_eq!(put(&v, &good).unwrap(), "RecordSets_CreateOrUpdate");
        let e = put(&v, &bad).unwrap_err();
        assert!(e.0.contains("ttl"), "{e}");
        let e = put(&q(&[("api-version", "2017-10-01")]), &good).unwrap_err();
        assert!(e.0.contains("api-version 2017-10-01"), "{e}");
        let e = put(&q(&[]), &good).unwrap_err();
        assert!(e.0.contains("`api-version` missing"), "{e}");
        let e = put(&q(&[("api-version", "2018-05-01"), ("force", "1")]), &good).unwrap_err();
        assert!(e.0.contains("`force`"), "{e}");
    }

    #[test]
    fn paths_parameters_and_paging_are_checked() {
        let c = azure();
        let get = |path: &str, query: &[(String, String)]| {
            c.check_request(&Request {
                method: "GET",
                path,
                query,
                headers: &[],
                body: None,
            })
            .map(|m| m.operation.id.clone())
        };
        let list = format!("{ZONE}/recordsets");
        assert_eq!(
            get(&list, &q(&[("api-version", "2018-05-01"), ("$top", "100")])).unwrap(),
            "RecordSets_ListByDnsZone"
        );
        // A next-page link carries the server's $skipToken.
        assert!(
            get(
                &list,
                &q(&[("api-version", "2018-05-01"), ("$skipToken", "abc")])
            )
            .is_ok()
        );
        let e = get(
            &list,
            &q(&[("api-version", "2018-05-01"), ("$top", "many")]),
        )
        .unwrap_err();
        assert!(e.0.contains("not a integer"), "{e}");
        let e = get(
            &format!("{ZONE}/HTTPS/www"),
            &q(&[("api-version", "2018-05-01")]),
        )
        .unwrap_err();
        assert!(e.0.contains("not one of"), "{e}");
        let e = get("/subscriptions/s/nope", &q(&[])).unwrap_err();
        assert!(e.0.contains("no operation"), "{e}");
    }

    #[test]
    fn google_changes_create_is_checked_against_the_discovery_document() {
        let c = google();
        let path = "/dns/v1/projects/p1/managedZones/z1/changes";
        let headers = json_headers();
        let change = json!({
            "additions": [{ "name": "www.example.com.", "type": "A", "ttl": 60, "rrdatas": ["192.0.2.1"] }],
            "deletions": [{ "name": "www.example.com.", "type": "A", "ttl": 300, "rrdatas": ["192.0.2.9"] }],
        });
        let create = |query: &[(String, String)], body: &Value| {
            c.check_request(&Request {
                method: "POST",
                path,
                query,
                headers: &headers,
                body: Some(body),
            })
        };
        let m = create(&q(&[("clientOperationId", "op-1")]), &change).unwrap();
        assert_eq!(m.operation.id, "dns.changes.create");
        assert_eq!(m.path_params["managedZone"], "z1");
        let misspelt = json!({ "additions": [{ "name": "a.", "type": "A", "TTL": 60 }] });
        let e = create(&q(&[]), &misspelt).unwrap_err();
        assert!(e.0.contains("TTL"), "{e}");
        let e = create(&q(&[("requestId", "x")]), &change).unwrap_err();
        assert!(e.0.contains("`requestId`"), "{e}");
        // Global parameters are accepted everywhere.
        assert!(create(&q(&[("prettyPrint", "false")]), &change).is_ok());

        let routed = json!({ "name": "api.example.com.", "type": "A", "ttl": 30, "routingPolicy": {
            "primaryBackup": {
                "primaryTargets": { "externalEndpoints": ["192.0.2.1"] },
                "backupGeoTargets": { "items": [{ "location": "us-east1", "rrdatas": ["198.51.100.1"] }] },
                "trickleTraffic": 0.0
            },
            "healthCheck": "projects/p1/global/healthChecks/api"
        }});
        c.check_body("ResourceRecordSet", &routed).unwrap();
    }

    const SCALE_SET: &str = "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachineScaleSets/api";

    #[test]
    fn scale_set_updates_and_reads_are_checked_against_the_compute_spec() {
        let c = Contract::azure_compute();
        let mut headers = json_headers();
        headers.push(("if-match".into(), "\"3\"".into()));
        let v = q(&[("api-version", "2024-07-01")]);
        let patch = |body: &Value| {
            c.check_request(&Request {
                method: "PATCH",
                path: SCALE_SET,
                query: &v,
                headers: &headers,
                body: Some(body),
            })
        };
        let good = json!({ "sku": { "name": "Standard_D2s_v3", "tier": "Standard", "capacity": 4 },
                           "tags": { "cairn_owner": "l" } });
        let m = patch(&good).unwrap();
        assert_eq!(m.operation.id, "VirtualMachineScaleSets_Update");
        assert_eq!(m.path_params["vmScaleSetName"], "api");
        let e = patch(&json!({ "sku": { "capcity": 4 } })).unwrap_err();
        assert!(e.0.contains("capcity"), "{e}");
        let e = patch(&json!({ "sku": { "capacity": "4" } })).unwrap_err();
        assert!(e.0.contains("not of type"), "{e}");
        // cairn never replaces a scale set: PUT and DELETE are not in the excerpt.
        let e = c
            .check_request(&Request {
                method: "PUT",
                path: SCALE_SET,
                query: &v,
                headers: &headers,
                body: Some(&good),
            })
            .unwrap_err();
        assert!(e.0.contains("no operation"), "{e}");

        let set = json!({ "id": SCALE_SET, "name": "api", "location": "westeurope",
            "type": "Microsoft.Compute/virtualMachineScaleSets", "etag": "\"4\"",
            "sku": { "name": "Standard_D2s_v3", "capacity": 4 },
            "properties": { "provisioningState": "Updating", "orchestrationMode": "Uniform",
                            "virtualMachineProfile": { "osProfile": { "computerNamePrefix": "api" } } } });
        c.check_response(m.operation, 200, Some(&set)).unwrap();
        let mut nowhere = set.clone();
        nowhere.as_object_mut().unwrap().remove("location");
        let e = c
            .check_response(m.operation, 200, Some(&nowhere))
            .unwrap_err();
        assert!(e.0.contains("location"), "{e}");
        let e = c.check_response(m.operation, 202, None).unwrap_err();
        assert!(e.0.contains("not declared"), "{e}");
        let e = c
            .check_response(m.operation, 404, Some(&json!({ "error": { "code": 404 } })))
            .unwrap_err();
        assert!(e.0.contains("CloudError"), "{e}");

        let list = c
            .check_request(&Request {
                method: "GET",
                path: SCALE_SET.trim_end_matches("/api"),
                query: &q(&[("api-version", "2024-07-01"), ("$skipToken", "2")]),
                headers: &[],
                body: None,
            })
            .unwrap();
        assert_eq!(list.operation.id, "VirtualMachineScaleSets_List");
        c.check_body(
            "OperationStatusResult",
            &json!({ "name": "op", "status": "InProgress",
            "startTime": "2025-01-01T00:00:00Z" }),
        )
        .unwrap();
        let e = c
            .check_body("OperationStatusResult", &json!({ "name": "op" }))
            .unwrap_err();
        assert!(e.contains("status"), "{e}");
    }

    #[test]
    fn split_contracts_resolve_relative_refs_and_refuse_dangling_or_doubled_names() {
        let main = json!({
            "swagger": "2.0", "info": { "title": "T", "version": "1" },
            "paths": { "/things/{name}": { "get": {
                "operationId": "Things_Get",
                "parameters": [
                    { "name": "name", "in": "path", "required": true, "type": "string" },
                    { "$ref": "../common/c.json#/parameters/ApiVersion" }
                ],
                "responses": { "200": { "schema": { "$ref": "#/definitions/Thing" } } },
                "x-ms-examples": { "x": { "$ref": "./examples/x.json" } }
            } } },
            "definitions": { "Thing": { "properties": {
                "part": { "$ref": "../common/c.json#/definitions/Part" } } } }
        });
        let common = json!({ "definitions": { "Part": { "properties": { "n": { "type": "integer" } } } },
            "parameters": { "ApiVersion": { "name": "api-version", "in": "query", "required": true, "type": "string" } } });
        let c = Contract::openapi2_files(
            "api/stable/main.json",
            &[
                ("api/stable/main.json", main.clone()),
                ("api/common/c.json", common.clone()),
            ],
        )
        .unwrap();
        let m = c
            .check_request(&Request {
                method: "GET",
                path: "/things/a",
                query: &q(&[("api-version", "1")]),
                headers: &[],
                body: None,
            })
            .unwrap();
        c.check_response(m.operation, 200, Some(&json!({ "part": { "n": 1 } })))
            .unwrap();
        assert!(
            c.check_response(m.operation, 200, Some(&json!({ "part": { "n": "one" } })))
                .is_err()
        );
        let e = Contract::openapi2_files(
            "api/stable/main.json",
            &[("api/stable/main.json", main.clone())],
        )
        .err()
        .unwrap();
        assert!(e.contains("../common/c.json#/definitions/Part"), "{e}");
        let e = Contract::openapi2_files(
            "api/stable/main.json",
            &[
                ("api/stable/main.json", main),
                ("api/common/c.json", common.clone()),
                ("other/c.json", common),
            ],
        )
        .err()
        .unwrap();
        assert!(e.contains("is in both"), "{e}");
        assert_eq!(
            join_relative("a/b/c/d.json", "../../../x/y.json"),
            "x/y.json"
        );
        assert_eq!(join_relative("a/b/d.json", "./e.json"), "a/b/e.json");
    }

    #[test]
    fn the_most_specific_google_template_wins() {
        let c = google();
        let m = c
            .check_request(&Request {
                method: "GET",
                path: "/dns/v1/projects/p1/managedZones/z1/rrsets/www.example.com./A",
                query: &[],
                headers: &[],
                body: None,
            })
            .unwrap();
        assert_eq!(m.operation.id, "dns.resourceRecordSets.get");
        assert_eq!(m.path_params["name"], "www.example.com.");
    }
}
