//! Diagnostics: errors and warnings that point at a span of a source file.
//!
//! Every finding about user input (config validation, later policy findings) is a `Diag`.
//! They are collected in a list (warnings never abort) and rendered together by miette.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceCode};

/// One loaded source file, shared by every diagnostic that points into it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path as shown to the user (relative to the current directory when possible).
    pub name: String,
    pub text: Arc<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// A location in a source file: which file and which byte range.
#[derive(Debug, Clone)]
pub struct Location {
    pub file: Arc<SourceFile>,
    pub span: Range<usize>,
}

impl Location {
    /// 1-based line and column of the start of the span.
    pub fn line_col(&self) -> (usize, usize) {
        Self::position(&self.file.text, self.span.start)
    }

    /// 1-based line and column of the end of the span.
    pub fn end_line_col(&self) -> (usize, usize) {
        Self::position(&self.file.text, self.span.end)
    }

    fn position(text: &str, offset: usize) -> (usize, usize) {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

#[derive(Debug, Clone)]
pub struct Diag {
    pub severity: Severity,
    /// Stable identifier, e.g. `config::unknown_key` or a policy rule's ID; used in docs and
    /// JSON output.
    pub code: Cow<'static, str>,
    pub message: String,
    pub location: Option<Location>,
    /// Text written under the highlighted span.
    pub label: String,
    /// Further spans, e.g. the first declaration of a duplicate.
    pub related: Vec<(Location, String)>,
    pub help: Option<String>,
}

impl Diag {
    pub fn error(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Diag {
            severity: Severity::Error,
            code: code.into(),
            message: message.into(),
            location: None,
            label: String::new(),
            related: Vec::new(),
            help: None,
        }
    }

    pub fn warning(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Diag {
            severity: Severity::Warning,
            ..Diag::error(code, message)
        }
    }

    pub fn at(mut self, location: Location, label: impl Into<String>) -> Self {
        self.location = Some(location);
        self.label = label.into();
        self
    }

    pub fn also(mut self, location: Location, label: impl Into<String>) -> Self {
        self.related.push((location, label.into()));
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    pub fn to_json(&self) -> serde_json::Value {
        let (file, line, column) = match &self.location {
            Some(l) => {
                let (line, col) = l.line_col();
                (Some(l.file.name.clone()), Some(line), Some(col))
            }
            None => (None, None, None),
        };
        serde_json::json!({
            "severity": match self.severity { Severity::Error => "error", Severity::Warning => "warning" },
            "code": self.code,
            "message": self.message,
            "file": file,
            "line": line,
            "column": column,
            "label": self.label,
            "help": self.help,
        })
    }
}

/// Adapter so miette can render a `Diag`. Related spans in other files are rendered as
/// short "related location" notes, since miette draws one source per report.
struct Report<'a> {
    diag: &'a Diag,
    source: Option<NamedSource<Arc<str>>>,
    labels: Vec<LabeledSpan>,
    related: Vec<Related>,
}

#[derive(Debug)]
struct Related {
    source: NamedSource<Arc<str>>,
    label: LabeledSpan,
}

impl fmt::Display for Related {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("related location")
    }
}

impl std::error::Error for Related {}

impl miette::Diagnostic for Related {
    fn severity(&self) -> Option<miette::Severity> {
        Some(miette::Severity::Advice)
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(self.label.clone())))
    }
}

impl<'a> Report<'a> {
    fn new(diag: &'a Diag) -> Self {
        let mut labels = Vec::new();
        let mut related = Vec::new();
        let source = diag.location.as_ref().map(|l| {
            labels.push(LabeledSpan::new_primary_with_span(
                Some(diag.label.clone()).filter(|s| !s.is_empty()),
                l.span.clone(),
            ));
            NamedSource::new(l.file.name.clone(), l.file.text.clone()).with_language("toml")
        });
        for (loc, text) in &diag.related {
            let same_file = diag
                .location
                .as_ref()
                .is_some_and(|l| Arc::ptr_eq(&l.file, &loc.file));
            let label = LabeledSpan::new_with_span(Some(text.clone()), loc.span.clone());
            if same_file {
                labels.push(label);
            } else {
                related.push(Related {
                    source: NamedSource::new(loc.file.name.clone(), loc.file.text.clone()),
                    label,
                });
            }
        }
        Report {
            diag,
            source,
            labels,
            related,
        }
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(&self.diag.code))
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diag
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }
    fn related<'b>(&'b self) -> Option<Box<dyn Iterator<Item = &'b dyn miette::Diagnostic> + 'b>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(
                self.related.iter().map(|r| r as &dyn miette::Diagnostic),
            ))
        }
    }
}

/// How diagnostics are drawn: colors only on a terminal and when NO_COLOR is unset.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
    pub width: usize,
}

pub fn render(diag: &Diag, style: Style) -> String {
    let theme = if style.color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(style.width)
        .with_links(false);
    let mut out = String::new();
    let report = Report::new(diag);
    if handler.render_report(&mut out, &report).is_err() {
        out = format!("{}: {}\n", diag.code, diag.message);
    }
    out
}

/// Renders all diagnostics, errors last (so they stay on screen), with a count line.
pub fn render_all(diags: &[Diag], style: Style) -> String {
    let mut sorted: Vec<&Diag> = diags.iter().collect();
    sorted.sort_by_key(|d| {
        let at = d
            .location
            .as_ref()
            .map(|l| (l.file.name.clone(), l.span.start));
        (d.severity, at.is_none(), at)
    });
    let mut out = String::new();
    for d in &sorted {
        out.push_str(&render(d, style));
        out.push('\n');
    }
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    // The count line sums up a configuration check; other failures speak for themselves.
    if errors > 0 && diags.iter().all(|d| d.code.starts_with("config::")) {
        out.push_str(&format!(
            "error: configuration has {errors} error{} and {warnings} warning{}\n",
            plural(errors),
            plural(warnings)
        ));
    }
    out
}

pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
