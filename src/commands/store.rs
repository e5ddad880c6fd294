//! `o1 ls`, `o1 rm` and `o1 config`: the model store and the settings.

use std::io::Write;

use anyhow::Result;
use o1::settings::{self, Settings};
use o1::store::Store;
use o1::terminal_text::for_terminal_line;

use crate::cli::RmArgs;

pub fn ls() -> Result<()> {
    let store = Store::open_default();
    let entries = store.list()?;
    let mut out = std::io::stdout().lock();
    if entries.is_empty() {
        writeln!(
            out,
            "no models in {} yet: `o1 pull` then `o1 convert {}` makes one",
            store.dir().display(),
            settings::DEFAULT_REPO
        )?;
        return Ok(());
    }
    // Names and strings come from files anyone could have put there: shown,
    // never obeyed.
    let entries: Vec<_> = entries
        .into_iter()
        .map(|mut e| {
            e.name = for_terminal_line(&e.name).into_owned();
            e.file_type = for_terminal_line(&e.file_type).into_owned();
            e.source = for_terminal_line(&e.source).into_owned();
            e
        })
        .collect();
    let width = entries
        .iter()
        .map(|e| e.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "{:width$}  {:8}  {:>9}  {:20}  SOURCE",
        "NAME", "TYPE", "SIZE", "MODIFIED"
    )?;
    for e in entries {
        let date = humantime::format_rfc3339_seconds(e.modified)
            .to_string()
            .replace('T', " ")
            .replace('Z', "");
        writeln!(
            out,
            "{:width$}  {:8}  {:>6.2} GB  {:20}  {}",
            e.name,
            e.file_type,
            e.bytes as f64 / 1e9,
            date,
            e.source
        )?;
    }
    Ok(())
}

pub fn rm(args: RmArgs) -> Result<()> {
    let path = Store::open_default().remove(&args.name)?;
    println!("removed {}", path.display());
    Ok(())
}

pub fn config() -> Result<()> {
    let settings = Settings::load()?;
    let path = settings.path();
    let mut out = std::io::stdout().lock();
    let present = if path.exists() {
        ""
    } else {
        " (not present: built-in defaults)"
    };
    writeln!(out, "config file: {}{present}", path.display())?;
    writeln!(
        out,
        "model store: {}",
        Store::open_default().dir().display()
    )?;
    writeln!(
        out,
        "precedence: flag > environment variable > config file > default\n"
    )?;
    for (key, value, source) in settings.effective()? {
        writeln!(out, "{key:15} {value:40} {source}")?;
    }
    Ok(())
}
