//! Output: colors only on terminals and without NO_COLOR; JSON when asked; progress as an
//! indicatif bar on a terminal and as plain lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::apply::{Outcome, Progress};
use crate::diag::{self, Diag, Style};
use crate::plan::{Action, PlannedChange};

pub struct Ui {
    pub json: bool,
    pub color_out: bool,
    pub color_err: bool,
    stderr_tty: bool,
}

impl Ui {
    pub fn new(no_color_flag: bool, json: bool) -> Ui {
        let no_color = no_color_flag || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let stderr_tty = std::io::stderr().is_terminal();
        Ui {
            json,
            color_out: !no_color && std::io::stdout().is_terminal(),
            color_err: !no_color && stderr_tty,
            stderr_tty,
        }
    }

    pub fn diagnostics(&self, diags: &[Diag]) {
        if diags.is_empty() {
            return;
        }
        if self.json {
            let list: Vec<_> = diags.iter().map(Diag::to_json).collect();
            eprintln!("{}", serde_json::json!({ "diagnostics": list }));
            return;
        }
        let style = Style {
            color: self.color_err,
            width: if self.stderr_tty { 120 } else { 100 },
        };
        eprint!("{}", diag::render_all(diags, style));
    }

    pub fn print_json<T: Serialize + ?Sized>(&self, value: &T) {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("output serializes")
        );
    }

    /// A note for the user on stderr (kept out of JSON output on stdout).
    pub fn note(&self, text: &str) {
        let style = console::Style::new().force_styling(self.color_err).cyan();
        eprintln!("{} {text}", style.apply_to("note:"));
    }

    /// Prints a one-line result: the text, or the JSON value with --json.
    pub fn message(&self, text: &str, json: serde_json::Value) {
        if self.json {
            self.print_json(&json);
        } else {
            println!("{text}");
        }
    }

    /// One recorded resource: its address, provider and ID, then its attributes.
    pub fn resource(&self, addr: &crate::model::Address, r: &crate::state::StateResource) {
        println!("# {addr} ({}, id {})", r.provider, r.id);
        for (k, v) in crate::plan::flatten(&r.attrs) {
            println!("    {k} = {v}");
        }
    }

    pub fn ok(&self, text: &str) -> String {
        console::Style::new()
            .force_styling(self.color_out)
            .green()
            .bold()
            .apply_to(text)
            .to_string()
    }

    pub fn outcome(&self, o: &Outcome) {
        for w in &o.inconsistent {
            eprintln!("warning: {w}");
        }
        let counts = format!(
            "{} added, {} changed, {} replaced, {} destroyed",
            o.count(Action::Create),
            o.count(Action::Update),
            o.count(Action::Replace),
            o.count(Action::Delete)
        );
        if o.failed.is_empty() && o.skipped.is_empty() {
            println!("\n{} {counts}.", self.ok("Apply complete!"));
            return;
        }
        let red = console::Style::new()
            .force_styling(self.color_out)
            .red()
            .bold();
        println!(
            "\n{} {counts}; {} failed, {} skipped.",
            red.apply_to("Apply finished with errors:"),
            o.failed.len(),
            o.skipped.len()
        );
        for f in &o.failed {
            println!("  {} {}: {}", red.apply_to("✗"), f.address, f.error);
        }
        for s in &o.skipped {
            println!("  - {}: {}", s.address, s.error);
        }
        println!("Completed changes are recorded in state. Fix the errors and run apply again.");
    }
}

/// Plain lines per change for small applies, per hundred changes for large ones.
const PER_CHANGE_LINES: usize = 200;

pub struct TerminalProgress {
    bar: Option<ProgressBar>,
    quiet: bool,
    total: usize,
    done: Mutex<usize>,
}

impl TerminalProgress {
    pub fn new(ui: &Ui, total: usize) -> TerminalProgress {
        let bar = (ui.stderr_tty && !ui.json).then(|| {
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template("{spinner} applying [{bar:30}] {pos}/{len} {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b
        });
        TerminalProgress {
            bar,
            quiet: ui.json,
            total,
            done: Mutex::new(0),
        }
    }

    fn line(&self, text: String) {
        match &self.bar {
            Some(b) => b.println(text),
            None => println!("{text}"),
        }
    }
}

impl Progress for TerminalProgress {
    fn start(&self, total: usize) {
        if !self.quiet && self.bar.is_none() && total > 0 {
            println!();
        }
    }

    fn done(&self, change: &PlannedChange, result: &Result<(), String>) {
        let mut done = self.done.lock().expect("progress lock");
        *done += 1;
        if let Some(b) = &self.bar {
            b.inc(1);
        }
        if self.quiet {
            return;
        }
        match result {
            Ok(()) if self.total <= PER_CHANGE_LINES => {
                self.line(format!("{}: {}", change.address, change.action.past()))
            }
            Ok(()) if (*done).is_multiple_of(100) || *done == self.total => {
                if self.bar.is_none() {
                    self.line(format!("applied {}/{} changes", *done, self.total));
                }
            }
            Ok(()) => {}
            Err(e) => self.line(format!("{}: {e}", change.address)),
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
