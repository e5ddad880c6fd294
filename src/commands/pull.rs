//! `o1 pull`: the checkpoint from the Hugging Face hub into the shared cache.

use anyhow::Result;
use o1::settings::Settings;
use o1::terminal_text::for_terminal_line;
use o1_hub::{PullOptions, Snapshot};

use crate::cli::PullArgs;

/// Pulls `repo` with progress bars; Ctrl+C stops it (the next pull resumes).
pub fn pull(repo: &str, revision: &str, quiet: bool) -> Result<Snapshot> {
    let mut options = PullOptions::from_env();
    options.cancel = Some(super::interrupt_flag());
    let mut progress = crate::progress::PullProgress::new(quiet);
    Ok(o1_hub::pull(repo, revision, &options, &mut progress)?)
}

pub fn run(args: PullArgs) -> Result<()> {
    let (repo, revision) = Settings::load()?.repo_and_revision(args.repo, args.revision)?;
    let snap = pull(&repo, &revision, args.quiet)?;
    println!(
        "pulled {repo}@{} ({} files, {} downloaded, {:.2} GB) into {}",
        for_terminal_line(snap.commit.get(..12).unwrap_or(&snap.commit)),
        snap.files.len(),
        snap.downloaded_files,
        snap.downloaded_bytes as f64 / 1e9,
        snap.dir.display()
    );
    println!("next: o1 convert {repo}");
    Ok(())
}
