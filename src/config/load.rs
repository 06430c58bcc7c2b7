//! Loading a stack directory: read every `.toml` file, parse with spans, substitute
//! variables, and deserialize each top-level entry on its own so all errors surface at once.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;
use serde::de::DeserializeOwned;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::raw::*;
use crate::diag::{Diag, Location, SourceFile};

/// One deserialized entry and the file it came from.
#[derive(Debug)]
pub struct Entry<T> {
    pub file: Arc<SourceFile>,
    /// Span of the whole entry (e.g. the `[[record]]` table).
    pub span: Range<usize>,
    pub value: T,
}

impl<T> Entry<T> {
    pub fn loc(&self, span: Range<usize>) -> Location {
        Location {
            file: self.file.clone(),
            span,
        }
    }
    pub fn whole(&self) -> Location {
        self.loc(self.span.clone())
    }
}

/// Everything declared by a stack's files, unvalidated.
#[derive(Debug, Default)]
pub struct RawConfig {
    pub files: Vec<Arc<SourceFile>>,
    pub stack: Vec<Entry<RawStack>>,
    pub backend: Vec<Entry<RawBackend>>,
    pub providers: Vec<Entry<(Sp<String>, ProviderEntry)>>,
    pub environments: Vec<Entry<Sp<String>>>,
    pub zones: Vec<Entry<RawZone>>,
    pub services: Vec<Entry<RawService>>,
    pub records: Vec<Entry<RawRecord>>,
    pub scaling: Vec<Entry<(Sp<String>, RawScaling)>>,
    pub compliance: Vec<Entry<RawCompliance>>,
    pub metrics: Vec<Entry<RawMetrics>>,
    pub monitoring: Vec<Entry<(Sp<String>, RawMonitoring)>>,
    /// The environment the variables were resolved for.
    pub environment: String,
    /// `(section, name)` of entries that failed to decode: references to them are not
    /// reported again as dangling.
    pub broken: Vec<(String, String)>,
}

#[derive(Debug)]
pub enum ProviderEntry {
    Sandbox(RawSandboxProvider),
    Aws(RawAwsProvider),
    Azure(RawAzureProvider),
    Gcp(RawGcpProvider),
}

/// Reads the `.toml` files of `dir` (not recursing: `policies/` and others are separate).
pub fn read_dir(dir: &Path) -> Result<Vec<Arc<SourceFile>>, Diag> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Diag::error(
            "config::read",
            format!("cannot read stack directory `{}`: {e}", dir.display()),
        )
    })?;
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(Diag::error(
            "config::empty",
            format!("no .toml files in `{}`", dir.display()),
        )
        .help("a stack is a directory of .toml files; see examples/quickstart"));
    }
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| {
                Diag::error(
                    "config::read",
                    format!("cannot read `{}`: {e}", p.display()),
                )
            })?;
            Ok(Arc::new(SourceFile {
                name: display_path(p),
                text: text.into(),
            }))
        })
        .collect()
}

fn display_path(p: &Path) -> String {
    let p = p.strip_prefix("./").unwrap_or(p);
    p.display().to_string()
}

/// Parses and deserializes the files. `env` selects variable overrides; when `None` the
/// stack's declared `environment` (or `default`) is used.
pub fn load(files: Vec<Arc<SourceFile>>, env: Option<&str>) -> (RawConfig, Vec<Diag>) {
    // Files are independent until variables are resolved: parse them in parallel.
    let parsed: Vec<(Spanned<DeTable<'_>>, Vec<Diag>)> = files
        .par_iter()
        .map(|file| {
            let (table, errors) = DeTable::parse_recoverable(&file.text);
            let diags = errors
                .into_iter()
                .map(|e| {
                    let span = e.span().unwrap_or(0..0);
                    Diag::error(
                        "config::syntax",
                        format!("invalid TOML: {}", e.message().trim()),
                    )
                    .at(
                        Location {
                            file: file.clone(),
                            span,
                        },
                        "here",
                    )
                })
                .collect();
            (table, diags)
        })
        .collect();
    let (tables, syntax): (Vec<_>, Vec<_>) = parsed.into_iter().unzip();
    let mut diags: Vec<Diag> = syntax.into_iter().flatten().collect();

    let environment = env
        .map(str::to_string)
        .or_else(|| declared_environment(&tables))
        .unwrap_or_else(|| "default".into());
    let vars = collect_variables(&files, &tables, &environment, &mut diags);

    let parts: Vec<(RawConfig, Vec<Diag>)> = files
        .par_iter()
        .zip(tables)
        .map(|(file, table)| {
            let mut loader = FileLoader {
                file: file.clone(),
                diags: Vec::new(),
                vars: Some(&vars),
                environment: &environment,
            };
            let mut part = RawConfig::default();
            for (key, value) in table.into_inner() {
                let key_span = key.span();
                loader.top_level(&key.into_inner(), key_span, value, &mut part);
            }
            (part, loader.diags)
        })
        .collect();
    let mut cfg = RawConfig {
        files,
        environment,
        ..RawConfig::default()
    };
    for (part, d) in parts {
        cfg.extend(part);
        diags.extend(d);
    }
    (cfg, diags)
}

impl RawConfig {
    /// Appends another file's entries (file order is kept by the caller).
    fn extend(&mut self, o: RawConfig) {
        self.stack.extend(o.stack);
        self.backend.extend(o.backend);
        self.providers.extend(o.providers);
        self.environments.extend(o.environments);
        self.zones.extend(o.zones);
        self.services.extend(o.services);
        self.records.extend(o.records);
        self.scaling.extend(o.scaling);
        self.compliance.extend(o.compliance);
        self.metrics.extend(o.metrics);
        self.monitoring.extend(o.monitoring);
        self.broken.extend(o.broken);
    }
}

fn declared_environment(tables: &[Spanned<DeTable<'_>>]) -> Option<String> {
    tables.iter().find_map(|t| {
        let stack = t.get_ref().get("stack")?.get_ref().as_table()?;
        Some(stack.get("environment")?.get_ref().as_str()?.to_string())
    })
}

/// Variable values for the selected environment, each with where it was defined.
type Vars<'i> = BTreeMap<String, Spanned<DeValue<'i>>>;

fn collect_variables<'i>(
    files: &[Arc<SourceFile>],
    tables: &[Spanned<DeTable<'i>>],
    environment: &str,
    diags: &mut Vec<Diag>,
) -> Vars<'i> {
    let mut vars: Vars<'i> = BTreeMap::new();
    let mut defined: BTreeMap<String, Location> = BTreeMap::new();
    let mut overrides: Vars<'i> = BTreeMap::new();
    for (file, table) in files.iter().zip(tables) {
        let table = table.get_ref();
        if let Some(v) = table.get("variables") {
            match v.get_ref().as_table() {
                Some(t) => {
                    for (k, v) in t {
                        let loc = Location {
                            file: file.clone(),
                            span: k.span(),
                        };
                        if let Some(first) = defined.get(k.get_ref().as_ref()) {
                            diags.push(
                                Diag::error(
                                    "config::duplicate",
                                    format!("variable `{}` is defined twice", k.get_ref()),
                                )
                                .at(loc, "defined again here")
                                .also(first.clone(), "first defined here"),
                            );
                            continue;
                        }
                        defined.insert(k.get_ref().to_string(), loc);
                        vars.insert(k.get_ref().to_string(), v.clone());
                    }
                }
                None => diags.push(
                    Diag::error("config::type", "`variables` must be a table").at(
                        Location {
                            file: file.clone(),
                            span: v.span(),
                        },
                        "expected a table",
                    ),
                ),
            }
        }
        let env_vars = table
            .get("env")
            .and_then(|e| e.get_ref().as_table())
            .and_then(|e| e.get(environment))
            .and_then(|e| e.get_ref().as_table())
            .and_then(|e| e.get("variables"))
            .and_then(|v| v.get_ref().as_table());
        for (k, v) in env_vars.into_iter().flatten() {
            overrides.insert(k.get_ref().to_string(), v.clone());
        }
    }
    vars.extend(overrides);
    vars
}

struct FileLoader<'v, 'i> {
    file: Arc<SourceFile>,
    diags: Vec<Diag>,
    /// `None` in files without `${...}` references (policy files).
    vars: Option<&'v Vars<'i>>,
    environment: &'v str,
}

impl<'i> FileLoader<'_, 'i> {
    fn loc(&self, span: Range<usize>) -> Location {
        Location {
            file: self.file.clone(),
            span,
        }
    }

    fn entry<T>(&self, span: Range<usize>, value: T) -> Entry<T> {
        Entry {
            file: self.file.clone(),
            span,
            value,
        }
    }

    fn top_level(
        &mut self,
        key: &str,
        key_span: Range<usize>,
        value: Spanned<DeValue<'i>>,
        cfg: &mut RawConfig,
    ) {
        let span = value.span();
        match key {
            "stack" => {
                if let Some(v) = self.decode(value, &[Seg::Key(key.into())]) {
                    cfg.stack.push(self.entry(span, v));
                }
            }
            "backend" => {
                if let Some(v) = self.decode(value, &[Seg::Key(key.into())]) {
                    cfg.backend.push(self.entry(span, v));
                }
            }
            "variables" => {} // collected before the other keys, for interpolation
            "env" => {
                // Validate shape; values were read by `collect_variables`.
                for (name, body) in self.table_entries(value, "env") {
                    if self
                        .decode::<RawEnv>(
                            body,
                            &[Seg::Key(key.into()), Seg::Key(name.get().clone())],
                        )
                        .is_some()
                    {
                        cfg.environments.push(self.entry(name.span(), name));
                    }
                }
            }
            "provider" => {
                for (name, body) in self.table_entries(value, "provider") {
                    let body_span = body.span();
                    let at = [Seg::Key(key.into()), Seg::Key(name.get().clone())];
                    let decoded = match name.get().as_str() {
                        "sandbox" => self.decode(body, &at).map(ProviderEntry::Sandbox),
                        "aws" => self.decode(body, &at).map(ProviderEntry::Aws),
                        "azure" => self.decode(body, &at).map(ProviderEntry::Azure),
                        "gcp" => self.decode(body, &at).map(ProviderEntry::Gcp),
                        other => {
                            let d = Diag::error(
                                "config::unknown_provider",
                                format!("unknown provider `{other}`"),
                            )
                            .at(self.loc(name.span()), "not a provider")
                            .help("providers are: sandbox, aws, azure, gcp");
                            self.diags.push(d);
                            None
                        }
                    };
                    if let Some(p) = decoded {
                        cfg.providers.push(self.entry(body_span, (name, p)));
                    }
                }
            }
            "zone" => self.array_entries(value, "zone", &mut cfg.zones, &mut cfg.broken),
            "service" => self.array_entries(value, "service", &mut cfg.services, &mut cfg.broken),
            "record" => self.array_entries(value, "record", &mut cfg.records, &mut cfg.broken),
            "scaling" => {
                for (name, body) in self.table_entries(value, "scaling") {
                    let body_span = body.span();
                    if let Some(v) =
                        self.decode(body, &[Seg::Key(key.into()), Seg::Key(name.get().clone())])
                    {
                        cfg.scaling.push(self.entry(body_span, (name, v)));
                    }
                }
            }
            "compliance" => {
                if let Some(v) = self.decode(value, &[Seg::Key(key.into())]) {
                    cfg.compliance.push(self.entry(span, v));
                }
            }
            "metrics" => {
                if let Some(v) = self.decode(value, &[Seg::Key(key.into())]) {
                    cfg.metrics.push(self.entry(span, v));
                }
            }
            "monitoring" => {
                for (name, body) in self.table_entries(value, "monitoring") {
                    let body_span = body.span();
                    if let Some(v) =
                        self.decode(body, &[Seg::Key(key.into()), Seg::Key(name.get().clone())])
                    {
                        cfg.monitoring.push(self.entry(body_span, (name, v)));
                    }
                }
            }
            other => {
                let mut d = Diag::error(
                    "config::unknown_key",
                    format!("unknown top-level key `{other}`"),
                )
                .at(self.loc(key_span), "not a known section");
                d = match suggest(other, TOP_LEVEL_KEYS) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help(format!("known sections: {}", TOP_LEVEL_KEYS.join(", "))),
                };
                self.diags.push(d);
            }
        }
    }

    /// `[[key]]` arrays of tables: each element decoded on its own.
    fn array_entries<T: DeserializeOwned>(
        &mut self,
        value: Spanned<DeValue<'i>>,
        key: &str,
        out: &mut Vec<Entry<T>>,
        broken: &mut Vec<(String, String)>,
    ) {
        let span = value.span();
        match value.into_inner() {
            DeValue::Array(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    let item_span = item.span();
                    let name = item
                        .get_ref()
                        .as_table()
                        .and_then(|t| t.get("name"))
                        .and_then(|n| n.get_ref().as_str())
                        .map(str::to_string);
                    match self.decode(item, &[Seg::Key(key.into()), Seg::Index(i)]) {
                        Some(v) => out.push(self.entry(item_span, v)),
                        None => broken.extend(name.map(|n| (key.to_string(), n))),
                    }
                }
            }
            other => self.diags.push(
                Diag::error(
                    "config::type",
                    format!(
                        "`{key}` must be an array of tables, found {}",
                        other.type_str()
                    ),
                )
                .at(
                    self.loc(span),
                    "expected [[".to_string() + key + "]] entries",
                ),
            ),
        }
    }

    /// `[key.NAME]` tables: each named entry decoded on its own.
    fn table_entries(
        &mut self,
        value: Spanned<DeValue<'i>>,
        key: &str,
    ) -> Vec<(Sp<String>, Spanned<DeValue<'i>>)> {
        let span = value.span();
        match value.into_inner() {
            DeValue::Table(t) => t
                .into_iter()
                .map(|(k, v)| (Sp(Spanned::new(k.span(), k.into_inner().into_owned())), v))
                .collect(),
            other => {
                self.diags.push(
                    Diag::error(
                        "config::type",
                        format!("`{key}` must be a table, found {}", other.type_str()),
                    )
                    .at(self.loc(span), "expected a table"),
                );
                Vec::new()
            }
        }
    }

    /// Deserializes one entry; unknown keys and type errors become diagnostics.
    /// `at` is the entry's path from the file's root, used only to locate unknown keys.
    fn decode<T: DeserializeOwned>(
        &mut self,
        mut value: Spanned<DeValue<'i>>,
        at: &[Seg],
    ) -> Option<T> {
        let span = value.span();
        // An entry with an unresolved `${...}` is not decoded: its values would only
        // produce follow-on errors.
        if self.vars.is_some() && !self.interpolate(&mut value) {
            return None;
        }
        let mut unknown = Vec::new();
        let result: Result<T, toml::de::Error> =
            serde_ignored::deserialize(ValueDeserializer::from(value), |path| {
                unknown.push(path_segments(&path))
            });
        if !unknown.is_empty() {
            // Rare (an error): parse the file again rather than keep a copy of every entry.
            let (root, _) = DeTable::parse_recoverable(&self.file.text);
            let root = Spanned::new(root.span(), DeValue::Table(root.into_inner()));
            for path in unknown {
                let full: Vec<&Seg> = at.iter().chain(path.iter()).collect();
                let (key, key_span) = key_span(&root, &full, at.len());
                self.diags.push(
                    Diag::error("config::unknown_key", format!("unknown key `{key}`"))
                        .at(self.loc(key_span), "not a known key here"),
                );
            }
        }
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                let span = e.span().unwrap_or(span);
                let message = e.message().trim().to_string();
                let (message, label) = describe_serde_error(&message);
                self.diags
                    .push(Diag::error("config::type", message).at(self.loc(span), label));
                None
            }
        }
    }

    /// Replaces `${var.NAME}` and `${environment}` in strings. A string that is exactly one
    /// reference takes the variable's type (so `min = "${var.min}"` is an integer).
    /// Returns false when a reference could not be resolved (reported).
    fn interpolate(&mut self, value: &mut Spanned<DeValue<'i>>) -> bool {
        let span = value.span();
        match value.get_mut() {
            DeValue::String(s) if s.contains("${") => {
                let vars = self.vars.expect("interpolation needs variables");
                match substitute(s, span.start, vars, self.environment) {
                    Ok(Substituted::Whole(v)) => {
                        *value = Spanned::new(span, v);
                        true
                    }
                    Ok(Substituted::Text(t)) => {
                        *s = Cow::Owned(t);
                        true
                    }
                    Err((message, ref_span)) => {
                        self.diags.push(
                            Diag::error("config::variable", message)
                                .at(self.loc(ref_span), "cannot be resolved"),
                        );
                        false
                    }
                }
            }
            // Every element is visited (no short-circuit) so all bad references are reported.
            DeValue::Array(items) => {
                let mut ok = true;
                for item in items.iter_mut() {
                    ok &= self.interpolate(item);
                }
                ok
            }
            DeValue::Table(t) => {
                let mut ok = true;
                for (_, v) in t.iter_mut() {
                    ok &= self.interpolate(v);
                }
                ok
            }
            _ => true,
        }
    }
}

enum Substituted<'i> {
    Whole(DeValue<'i>),
    Text(String),
}

/// `offset` is where the string's quote starts, to point at the reference itself.
fn substitute<'i>(
    s: &str,
    offset: usize,
    vars: &Vars<'i>,
    environment: &str,
) -> Result<Substituted<'i>, (String, Range<usize>)> {
    let mut out = String::new();
    let mut rest = s;
    let mut consumed = 0;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let ref_span = offset + 1 + consumed + start
            ..offset + 1 + consumed + start + 2 + after.find('}').map_or(after.len(), |e| e + 1);
        let end = after
            .find('}')
            .ok_or_else(|| ("unterminated `${` in string".to_string(), ref_span.clone()))?;
        let name = after[..end].trim();
        let text = if name == "environment" {
            DeValue::String(Cow::Owned(environment.to_string()))
        } else if let Some(var) = name.strip_prefix("var.") {
            match vars.get(var) {
                Some(v) => v.get_ref().clone(),
                None => {
                    let known: Vec<&str> = vars.keys().map(String::as_str).collect();
                    let hint = suggest(var, &known)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    return Err((format!("undefined variable `{var}`{hint}"), ref_span));
                }
            }
        } else {
            return Err((
                format!(
                    "unknown reference `${{{name}}}`: use `${{var.NAME}}` or `${{environment}}`"
                ),
                ref_span,
            ));
        };
        let whole = start == 0 && end + 3 == rest.len() && consumed == 0;
        if whole {
            return Ok(Substituted::Whole(text));
        }
        match &text {
            DeValue::String(t) => out.push_str(t),
            DeValue::Integer(i) => out.push_str(&i.to_string()),
            DeValue::Float(f) => out.push_str(&f.to_string()),
            DeValue::Boolean(b) => out.push_str(&b.to_string()),
            other => {
                return Err((
                    format!(
                        "variable `{name}` is {} and cannot be placed inside a string",
                        other.type_str()
                    ),
                    ref_span,
                ));
            }
        }
        consumed += start + 2 + end + 1;
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Substituted::Text(out))
}

/// Reads a TOML file that is not a stack file (policy files) the way stack files are read:
/// each top-level entry decoded on its own, unknown keys and type errors as diagnostics.
pub struct FileReader<'i> {
    loader: FileLoader<'i, 'i>,
    /// The file's top-level keys, in order, for the caller to decode.
    pub keys: Vec<(Sp<String>, Spanned<DeValue<'i>>)>,
}

impl<'i> FileReader<'i> {
    pub fn parse(file: &'i Arc<SourceFile>) -> FileReader<'i> {
        let (table, errors) = DeTable::parse_recoverable(&file.text);
        let mut loader = FileLoader {
            file: file.clone(),
            diags: Vec::new(),
            vars: None,
            environment: "",
        };
        for e in errors {
            let span = e.span().unwrap_or(0..0);
            let d = Diag::error(
                "config::syntax",
                format!("invalid TOML: {}", e.message().trim()),
            )
            .at(loader.loc(span), "here");
            loader.diags.push(d);
        }
        let keys = table
            .into_inner()
            .into_iter()
            .map(|(k, v)| (Sp(Spanned::new(k.span(), k.into_inner().into_owned())), v))
            .collect();
        FileReader { loader, keys }
    }

    /// Decodes a `[[key]]` array, each element on its own.
    pub fn array<T: DeserializeOwned>(
        &mut self,
        key: &str,
        value: Spanned<DeValue<'i>>,
    ) -> Vec<Entry<T>> {
        let mut out = Vec::new();
        self.loader
            .array_entries(value, key, &mut out, &mut Vec::new());
        out
    }

    /// Decodes a `[key]` table.
    pub fn table<T: DeserializeOwned>(
        &mut self,
        key: &str,
        value: Spanned<DeValue<'i>>,
    ) -> Option<Entry<T>> {
        let span = value.span();
        let v = self.loader.decode(value, &[Seg::Key(key.into())])?;
        Some(self.loader.entry(span, v))
    }

    pub fn unknown_key(&mut self, key: &Sp<String>, known: &[&str]) {
        let mut d = Diag::error(
            "config::unknown_key",
            format!("unknown top-level key `{}`", key.get()),
        )
        .at(self.loader.loc(key.span()), "not a known section");
        d = match suggest(key.get(), known) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None => d.help(format!("known sections: {}", known.join(", "))),
        };
        self.loader.diags.push(d);
    }

    pub fn diags(self) -> Vec<Diag> {
        self.loader.diags
    }
}

#[derive(Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

fn path_segments(path: &serde_ignored::Path<'_>) -> Vec<Seg> {
    use serde_ignored::Path;
    let mut segs = match path {
        Path::Root => return Vec::new(),
        Path::Seq { parent, index } => {
            let mut s = path_segments(parent);
            s.push(Seg::Index(*index));
            s
        }
        Path::Map { parent, key } => {
            let mut s = path_segments(parent);
            // `Spanned` reads its value through private keys; they are not user keys.
            if !key.starts_with("$__serde_spanned_private") {
                s.push(Seg::Key(key.clone()));
            }
            s
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => path_segments(parent),
    };
    segs.shrink_to_fit();
    segs
}

/// The dotted key and the span of its last key in the source.
/// `skip` leading segments locate the entry and are left out of the name.
fn key_span(root: &Spanned<DeValue<'_>>, path: &[&Seg], skip: usize) -> (String, Range<usize>) {
    let mut node = root;
    let mut span = root.span();
    let mut names = Vec::new();
    for (i, seg) in path.iter().enumerate() {
        match (*seg, node.get_ref()) {
            (Seg::Key(k), DeValue::Table(t)) => {
                if i >= skip {
                    names.push(k.clone());
                }
                match t.iter().find(|(key, _)| key.get_ref() == k) {
                    Some((key, v)) => {
                        span = key.span();
                        node = v;
                    }
                    None => break,
                }
            }
            (Seg::Index(i), DeValue::Array(a)) => match a.get(*i) {
                Some(v) => {
                    span = v.span();
                    node = v;
                }
                None => break,
            },
            _ => break,
        }
    }
    (names.join("."), span)
}

/// Turns serde's wording into a message and a short label, in TOML's terms.
fn describe_serde_error(message: &str) -> (String, String) {
    let message = &message
        .replace("expected i64", "expected an integer")
        .replace("expected f64", "expected a number")
        .replace("expected u32", "expected an integer")
        .replace("a sequence", "an array")
        .replace("a map", "a table");
    if let Some(rest) = message.strip_prefix("missing field ") {
        return (
            format!("missing required key {rest}"),
            format!("this table needs {rest}"),
        );
    }
    if message.starts_with("unknown variant") {
        let label = message
            .split(", expected")
            .next()
            .unwrap_or(message)
            .replace("unknown variant", "unknown value");
        return (message.replace("unknown variant", "unknown value"), label);
    }
    if message.starts_with("invalid type") {
        let label = message
            .split(", expected")
            .nth(1)
            .map(|e| format!("expected{e}"))
            .unwrap_or_default();
        return (message.to_string(), label);
    }
    (message.to_string(), "here".to_string())
}

/// The closest known word, for "did you mean" hints.
pub fn suggest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::levenshtein(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}
