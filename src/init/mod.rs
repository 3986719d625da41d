//! `mew init`: write `.mew/space.yaml` from a template embedded in the binary.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use crate::cli::{InitArgs, SpaceArgs};

pub struct Template {
    pub name: &'static str,
    pub summary: &'static str,
    pub text: &'static str,
}

pub const TEMPLATES: &[Template] = &[
    Template {
        name: "demo",
        summary: "shows off mew with nothing but a POSIX shell: readiness, colours, crashes and restarts, a prompt, a full-screen clock",
        text: include_str!("../assets/templates/demo.yaml"),
    },
    Template {
        name: "mew",
        summary: "a MEW space: a gateway and an agent participant (upstream format, tokens, capabilities)",
        text: include_str!("../assets/templates/mew.yaml"),
    },
];

/// Lines `mew init` makes sure `.gitignore` has.
pub const GITIGNORE_LINES: &[&str] = &[".mew/logs/", ".mew/run/", ".mew/tokens/"];

pub use crate::config::slug;

/// Render a template: `{{ID}}`, `{{NAME}}` (a YAML double-quoted string) and `{{PORT}}`.
pub fn render(template: &str, name: &str, port: u16) -> Result<String, String> {
    let t = TEMPLATES
        .iter()
        .find(|t| t.name == template)
        .ok_or_else(|| unknown_template(template))?;
    let quoted = serde_json::to_string(name).map_err(|e| e.to_string())?;
    Ok(t.text
        .replace("{{ID}}", &slug(name))
        .replace("{{NAME}}", &quoted)
        .replace("{{PORT}}", &port.to_string()))
}

fn unknown_template(name: &str) -> String {
    let names: Vec<&str> = TEMPLATES.iter().map(|t| t.name).collect();
    let mut msg = format!("unknown template `{name}`; available: {}", names.join(", "));
    if let Some(s) = crate::config::did_you_mean(name, &names) {
        msg.push_str(&format!(" (did you mean `{s}`?)"));
    }
    msg
}

/// Append the missing lines of [`GITIGNORE_LINES`]. Returns the lines added.
pub fn update_gitignore(dir: &Path) -> std::io::Result<Vec<&'static str>> {
    let path = dir.join(".gitignore");
    let existing = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let have: Vec<&str> = existing.lines().map(str::trim).collect();
    let missing: Vec<&'static str> = GITIGNORE_LINES
        .iter()
        .copied()
        .filter(|l| !have.contains(l) && !have.contains(&l.trim_end_matches('/')))
        .collect();
    if missing.is_empty() {
        return Ok(missing);
    }
    let mut add = String::new();
    if !existing.is_empty() && !existing.ends_with('\n') {
        add.push('\n');
    }
    for l in &missing {
        add.push_str(l);
        add.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    f.write_all(add.as_bytes())?;
    Ok(missing)
}

pub fn run(space: &SpaceArgs, args: &InitArgs) -> ExitCode {
    if args.list_templates {
        for t in TEMPLATES {
            println!("{:<6} {}", t.name, t.summary);
        }
        return ExitCode::SUCCESS;
    }
    let dir = &space.space_dir;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => std::fs::canonicalize(dir)
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "space".to_owned()),
    };
    let text = match render(
        &args.template,
        &name,
        args.port.unwrap_or(crate::config::DEFAULT_PORT),
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let target = dir.join(".mew").join("space.yaml");
    if target.exists() && !args.force {
        eprintln!(
            "error: {} already exists; not overwriting it\nhelp: pass --force to replace it with the `{}` template",
            target.display(),
            args.template
        );
        return ExitCode::from(1);
    }
    let result = std::fs::create_dir_all(dir.join(".mew"))
        .and_then(|()| std::fs::write(&target, &text))
        .map_err(|e| format!("cannot write {}: {e}", target.display()))
        .and_then(|()| {
            update_gitignore(dir)
                .map_err(|e| format!("cannot update {}: {e}", dir.join(".gitignore").display()))
        });
    match result {
        Ok(added) => {
            println!("wrote {} (template `{}`)", target.display(), args.template);
            if !added.is_empty() {
                println!(
                    "added {} to {}",
                    added.join(" "),
                    dir.join(".gitignore").display()
                );
            }
            println!("next: `mew space check` shows the plan; `mew space up` runs it");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("my space"), "my-space");
        assert_eq!(slug("demo"), "demo");
        assert_eq!(slug("..x"), "x");
        assert_eq!(slug("ü"), "space");
    }

    #[test]
    fn render_substitutes() {
        let t = render("mew", "My \"space\"", 9001).unwrap();
        assert!(t.contains("id: My--space-"), "{t}");
        assert!(t.contains(r#"name: "My \"space\"""#));
        assert!(t.contains("port: 9001"));
        assert!(!t.contains("{{"));
        assert!(
            render("dem", "x", 1)
                .unwrap_err()
                .contains("did you mean `demo`?")
        );
    }

    #[test]
    fn every_template_passes_check() {
        for t in TEMPLATES {
            let text = render(t.name, "tpl", 8080).unwrap();
            let dir = std::path::Path::new("/tmp/tpl");
            let cfg = crate::config::parse_yaml(&text, &dir.join(".mew/space.yaml"), dir)
                .unwrap_or_else(|e| panic!("template {}:\n{e}", t.name));
            assert!(cfg.warnings.is_empty(), "{}: {:?}", t.name, cfg.warnings);
        }
    }

    #[test]
    fn gitignore_lines_added_once() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(".gitignore"), "target\n.mew/run").unwrap();
        assert_eq!(
            update_gitignore(tmp.path()).unwrap(),
            vec![".mew/logs/", ".mew/tokens/"]
        );
        assert!(update_gitignore(tmp.path()).unwrap().is_empty());
        let text = std::fs::read_to_string(tmp.path().join(".gitignore")).unwrap();
        assert_eq!(text, "target\n.mew/run\n.mew/logs/\n.mew/tokens/\n");
    }
}
