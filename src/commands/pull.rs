//! `o1 pull`: the checkpoint from the Hugging Face hub into the shared cache.

use anyhow::Result;
use o1::settings::{self, FileSettings};
use o1_hub::{PullOptions, Snapshot};

use crate::cli::PullArgs;

/// The repository and revision to use: flag, environment, config, default.
pub fn repo_and_revision(
    repo: Option<&str>,
    revision: Option<&str>,
    file: &FileSettings,
) -> (String, String) {
    let repo = repo
        .map(str::to_string)
        .or_else(|| std::env::var("O1_REPO").ok())
        .or(file.repo.clone())
        .unwrap_or_else(|| settings::DEFAULT_REPO.into());
    let revision = revision
        .map(str::to_string)
        .or(file.revision.clone())
        .unwrap_or_else(|| settings::DEFAULT_REVISION.into());
    (repo, revision)
}

/// Pulls `repo` with progress bars; Ctrl+C stops it (the next pull resumes).
pub fn pull(repo: &str, revision: &str, quiet: bool) -> Result<Snapshot> {
    let mut options = PullOptions::from_env();
    options.cancel = Some(super::interrupt_flag());
    let mut progress = crate::progress::PullProgress::new(quiet);
    Ok(o1_hub::pull(repo, revision, &options, &mut progress)?)
}

pub fn run(args: PullArgs) -> Result<()> {
    let file = FileSettings::load()?;
    let (repo, revision) = repo_and_revision(args.repo.as_deref(), args.revision.as_deref(), &file);
    let snap = pull(&repo, &revision, args.quiet)?;
    println!(
        "pulled {repo}@{} ({} files, {} downloaded, {:.2} GB) into {}",
        &snap.commit[..snap.commit.len().min(12)],
        snap.files.len(),
        snap.downloaded_files,
        snap.downloaded_bytes as f64 / 1e9,
        snap.dir.display()
    );
    println!("next: o1 convert {repo}");
    Ok(())
}
