//! `mew space export`: the space translated for systemd, docker compose
//! or Kubernetes (the export module renders; this writes and says).

use std::process::ExitCode;

use serde_json::json;

use super::{Error, Outcome};
use crate::cli::{ExportArgs, ExportFormat, SpaceArgs};
use crate::export::{self, Export, Input, TokenRef};

/// `mew space export`: the files written (or, with `--json`, printed), a
/// note on stderr for each thing not translated as is.
pub fn run(space: &SpaceArgs, args: &ExportArgs) -> Outcome {
    let cfg = crate::config::load(&crate::check::load_options(space))?;
    let (token_ref, render): (TokenRef, fn(&Input<'_>) -> Export) = match args.format {
        ExportFormat::Systemd => (export::systemd::TOKEN_REF, export::systemd::render),
        ExportFormat::Compose => (export::compose::TOKEN_REF, export::compose::render),
        ExportFormat::Kubernetes => (export::kubernetes::TOKEN_REF, export::kubernetes::render),
    };
    let (inp, warnings) = export::input(&cfg, token_ref, args.image.clone(), args.system)
        .map_err(|e| Error::Failed(format!("cannot read or make the space's tokens: {e}")))?;
    for w in cfg.warnings.iter().chain(warnings.iter()) {
        eprintln!("{}", crate::server::format_diagnostic("warning", w));
    }
    let exported = render(&inp);
    for n in &exported.notes {
        let what = match &n.process {
            Some(p) => format!("{p}.{}", n.key),
            None => n.key.clone(),
        };
        eprintln!(
            "mew export: `{}` is not translated as is: {}",
            crate::config::escape(&what),
            crate::config::escape(&n.instead)
        );
    }
    if args.json {
        let v = json!({
            "format": args.format.name(),
            "files": exported.files,
            "notes": exported.notes,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| cfg.dir.join(".mew").join("export").join(args.format.name()));
    export::write_files(&out, &exported.files).map_err(|e| Error::said("mew export", 1, e))?;
    for f in &exported.files {
        println!("{}", out.join(&f.path).display());
    }
    Ok(ExitCode::SUCCESS)
}
