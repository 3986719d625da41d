//! `mew init`'s variables: where each value comes from, and `{{VAR}}`
//! substitution.

use indexmap::IndexMap;

use super::template::{VarSpec, is_var_name};

/// Variables every template can use without declaring them, with the flag
/// that sets each and its default.
pub(crate) const BUILT_IN_VARS: &[(&str, &str, &str)] = &[
    ("SPACE_NAME", "--name", "${dirname}"),
    ("SPACE_DESCRIPTION", "--description", ""),
    ("PORT", "--port", "8080"),
    ("AGENT_MODEL", "--model", "gpt-5"),
    ("UI_THEME", "--theme", "neon-pulse"),
];

/// Names ending so are blanked when they have no value, as upstream does:
/// a secret is read from the environment at run time, never written.
pub(crate) const SECRET_SUFFIXES: &[&str] = &["_API_KEY", "_SECRET", "_PASSWORD"];

/// Asks for a variable: `(spec, shown default)` → the answer (empty: keep
/// the default).
pub(crate) type Ask<'a> = &'a mut dyn FnMut(&VarSpec, &str) -> std::io::Result<String>;

/// What the command line and the machine give.
pub(crate) struct Inputs<'a> {
    /// Values from flags (`--name` → SPACE_NAME, ..., `--var K=V`).
    pub explicit: IndexMap<String, String>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// `${dirname}`: the space directory's name.
    pub dirname: String,
    /// `${date}`: today, `YYYY-MM-DD` (UTC, as upstream).
    pub date: String,
    /// Asks for a variable (only when stdin and stdout are terminals).
    pub ask: Option<Ask<'a>>,
}

/// Every value, and the sensitive names left out.
#[derive(Debug, Default)]
pub(crate) struct Values {
    pub values: IndexMap<String, String>,
    pub sensitive: Vec<String>,
    /// Where each value came from, for the summary: (name, "flag" | "env X" | ...).
    pub origin: IndexMap<String, String>,
}

/// `${dirname}`, `${username}` and `${date}` in a default.
pub(crate) fn expand_default(s: &str, inputs: &Inputs<'_>) -> String {
    let user = (inputs.env)("USER")
        .or_else(|| (inputs.env)("USERNAME"))
        .unwrap_or_else(|| "user".into());
    s.replace("${dirname}", &inputs.dirname)
        .replace("${username}", &user)
        .replace("${date}", &inputs.date)
}

/// Resolve every variable: a flag (or `--var`), else the first set
/// `env_sources` variable, else the `default`; a `prompt` variable is asked
/// for when `inputs.ask` is given. Errors name every variable left without a
/// value. Sensitive variables are never resolved (upstream never writes them).
pub(crate) fn resolve(specs: &[VarSpec], inputs: &mut Inputs<'_>) -> Result<Values, String> {
    let mut out = Values::default();
    let mut missing = Vec::new();
    for spec in specs {
        if spec.sensitive {
            out.sensitive.push(spec.name.clone());
            continue;
        }
        if let Some(v) = inputs.explicit.get(&spec.name) {
            out.values.insert(spec.name.clone(), v.clone());
            out.origin.insert(spec.name.clone(), "flag".into());
            continue;
        }
        let from_env = spec
            .env_sources
            .iter()
            .find_map(|e| (inputs.env)(e).filter(|v| !v.is_empty()).map(|v| (e, v)));
        let (mut value, mut origin) = match from_env {
            Some((e, v)) => (Some(v), format!("${e}")),
            None => (
                spec.default.as_deref().map(|d| expand_default(d, inputs)),
                "default".to_owned(),
            ),
        };
        if spec.prompt
            && let Some(ask) = inputs.ask.as_mut()
        {
            let shown = value.clone().unwrap_or_default();
            let answer = ask(spec, &shown).map_err(|e| format!("cannot read an answer: {e}"))?;
            let answer = answer.trim();
            if !answer.is_empty() {
                value = Some(answer.to_owned());
                origin = "answer".into();
            }
        }
        // `required: true` also refuses an empty value; `required: false`
        // accepts none at all.
        match value {
            Some(v) if !(v.is_empty() && spec.required == Some(true)) => {
                out.values.insert(spec.name.clone(), v);
                out.origin.insert(spec.name.clone(), origin);
            }
            _ if spec.required == Some(false) => {
                out.values.insert(spec.name.clone(), String::new());
                out.origin
                    .insert(spec.name.clone(), "empty (not required)".into());
            }
            _ => missing.push(spec),
        }
    }
    if !missing.is_empty() {
        let mut msg = String::from("no value for ");
        let list: Vec<String> = missing
            .iter()
            .map(|s| {
                let mut how = format!("`{}`", s.name);
                if !s.description.is_empty() {
                    how.push_str(&format!(" ({})", s.description));
                }
                how
            })
            .collect();
        msg.push_str(&list.join(", "));
        let mut helps: Vec<String> = Vec::new();
        for s in &missing {
            let mut ways = vec![format!("--var {}=VALUE", s.name)];
            if let Some((_, flag, _)) = BUILT_IN_VARS.iter().find(|(n, _, _)| *n == s.name) {
                ways.insert(0, format!("{flag} VALUE"));
            }
            ways.extend(s.env_sources.iter().map(|e| format!("${e}")));
            helps.push(format!("{}: {}", s.name, ways.join(" or ")));
        }
        msg.push_str(&format!(
            "\nhelp: give a value with\n  {}",
            helps.join("\n  ")
        ));
        return Err(msg);
    }
    // Built-in variables the template did not declare.
    for (name, _, default) in BUILT_IN_VARS {
        if out.values.contains_key(*name) || out.sensitive.iter().any(|s| s == name) {
            continue;
        }
        let (v, origin) = match inputs.explicit.get(*name) {
            Some(v) => (v.clone(), "flag"),
            None => (expand_default(default, inputs), "built-in default"),
        };
        out.values.insert((*name).to_owned(), v);
        out.origin.insert((*name).to_owned(), origin.into());
    }
    // `--var` names the template does not declare: still substituted.
    for (k, v) in &inputs.explicit {
        if !out.values.contains_key(k) && !out.sensitive.contains(k) {
            out.values.insert(k.clone(), v.clone());
            out.origin.insert(k.clone(), "flag".into());
        }
    }
    if !out.values.contains_key("SPACE_ID") {
        let id = crate::config::slug(out.values.get("SPACE_NAME").map_or("", |s| s.as_str()));
        out.values.insert("SPACE_ID".into(), id);
        out.origin
            .insert("SPACE_ID".into(), "slug of SPACE_NAME".into());
    }
    // JSON-escaped variants (a JSON string literal, quotes included).
    let names: Vec<String> = out.values.keys().cloned().collect();
    for n in names {
        let j = format!("{n}_JSON");
        if !out.values.contains_key(&j) {
            let lit = serde_json::to_string(&out.values[&n]).map_err(|e| e.to_string())?;
            out.values.insert(j.clone(), lit);
        }
    }
    Ok(out)
}

/// A `{{NAME}}` with no value, left as it was.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Unknown {
    pub name: String,
    pub line: usize,
}

/// Substitute `{{NAME}}` (exactly: no spaces, `NAME` a variable name) in one
/// pass, so a value holding `{{X}}` is not substituted again. A name with no
/// value is blanked if it is sensitive or ends in a [`SECRET_SUFFIXES`]
/// suffix, else left as is and reported.
pub(crate) fn substitute(text: &str, values: &Values) -> (String, Vec<Unknown>) {
    let mut out = String::with_capacity(text.len());
    let mut unknown = Vec::new();
    let mut rest = text;
    let mut line = 1;
    while let Some(i) = rest.find("{{") {
        let (before, after) = rest.split_at(i);
        out.push_str(before);
        line += before.matches('\n').count();
        let inner = &after[2..];
        let end = inner.find("}}").filter(|&e| is_var_name(&inner[..e]));
        match end {
            Some(e) => {
                let name = &inner[..e];
                if let Some(v) = values.values.get(name) {
                    out.push_str(v);
                } else if values.sensitive.iter().any(|s| s == name)
                    || SECRET_SUFFIXES.iter().any(|s| name.ends_with(s))
                {
                } else {
                    out.push_str(&after[..e + 4]);
                    unknown.push(Unknown {
                        name: name.to_owned(),
                        line,
                    });
                }
                rest = &inner[e + 2..];
            }
            None => {
                out.push_str("{{");
                rest = inner;
            }
        }
    }
    out.push_str(rest);
    (out, unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, default: Option<&str>) -> VarSpec {
        VarSpec {
            name: name.into(),
            default: default.map(Into::into),
            ..VarSpec::default()
        }
    }

    fn inputs<'a>(env: &'a dyn Fn(&str) -> Option<String>) -> Inputs<'a> {
        Inputs {
            explicit: IndexMap::new(),
            env,
            dirname: "proj".into(),
            date: "2025-01-02".into(),
            ask: None,
        }
    }

    #[test]
    fn flag_then_env_then_default() {
        let env = |k: &str| (k == "E1").then(|| "from-env".to_owned());
        let mut a = spec("A", Some("d"));
        a.env_sources = vec!["E0".into(), "E1".into()];
        let mut i = inputs(&env);
        let v = resolve(&[a.clone(), spec("B", Some("${dirname}-${date}"))], &mut i).unwrap();
        assert_eq!(v.values["A"], "from-env");
        assert_eq!(v.origin["A"], "$E1");
        assert_eq!(v.values["B"], "proj-2025-01-02");
        assert_eq!(v.values["SPACE_NAME"], "proj");
        assert_eq!(v.values["PORT"], "8080");
        assert_eq!(v.values["A_JSON"], "\"from-env\"");
        i.explicit.insert("A".into(), "flag".into());
        assert_eq!(resolve(&[a], &mut i).unwrap().values["A"], "flag");
    }

    #[test]
    fn missing_values_are_named() {
        let env = |_: &str| None;
        let mut i = inputs(&env);
        let e = resolve(&[spec("X", None), spec("Y", Some("y"))], &mut i).unwrap_err();
        assert!(e.contains("`X`") && e.contains("--var X=VALUE"), "{e}");
        assert!(!e.contains("`Y`"));
        let mut opt = spec("X", None);
        opt.required = Some(false);
        assert_eq!(resolve(&[opt], &mut i).unwrap().values["X"], "");
        // An explicit empty default is a value.
        assert_eq!(
            resolve(&[spec("X", Some(""))], &mut i).unwrap().values["X"],
            ""
        );
    }

    #[test]
    fn prompts_only_through_ask() {
        let env = |_: &str| None;
        let mut asked = Vec::new();
        let mut ask = |s: &VarSpec, d: &str| {
            asked.push(format!("{}={d}", s.name));
            Ok(if s.name == "A" {
                "typed".into()
            } else {
                String::new()
            })
        };
        let mut a = spec("A", Some("a"));
        a.prompt = true;
        let mut b = spec("B", Some("b"));
        b.prompt = true;
        let mut i = inputs(&env);
        i.ask = Some(&mut ask);
        let v = resolve(&[a, b, spec("C", Some("c"))], &mut i).unwrap();
        assert_eq!(v.values["A"], "typed");
        assert_eq!(v.values["B"], "b");
        drop(i);
        assert_eq!(asked, vec!["A=a", "B=b"]);
    }

    #[test]
    fn sensitive_values_are_never_kept() {
        let env = |_: &str| Some("sk-secret".to_owned());
        let mut k = spec("AGENT_API_KEY", None);
        k.sensitive = true;
        k.env_sources = vec!["OPENAI_API_KEY".into()];
        let mut i = inputs(&env);
        let v = resolve(&[k], &mut i).unwrap();
        let (t, u) = substitute("key: '{{AGENT_API_KEY}}' x: {{OTHER_SECRET}}", &v);
        assert_eq!(t, "key: '' x: ");
        assert!(u.is_empty());
    }

    #[test]
    fn substitution_is_one_pass_and_reports_unknowns() {
        let mut v = Values::default();
        v.values.insert("A".into(), "{{B}}".into());
        v.values.insert("B".into(), "b".into());
        let (t, u) = substitute("a={{A}}\nb={{B}} {{ A }} {{\n{{C}} }} {{", &v);
        assert_eq!(t, "a={{B}}\nb=b {{ A }} {{\n{{C}} }} {{");
        assert_eq!(
            u,
            vec![Unknown {
                name: "C".into(),
                line: 3
            }]
        );
        assert_eq!(substitute("{{x}}{{x}}", &v).1.len(), 2);
    }
}
