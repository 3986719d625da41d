//! The development loop's pure config functions: `replicas:` expansion and
//! [`replica_of`] (for `mew space scale`), [`select`] (for `mew space up
//! NAME…` and `--profile`), and [`diff`] (for `mew space reload`).
//!
//! Nothing here does IO: every function takes configs and returns data.

use serde::Serialize;

use super::build::Builder;
use super::model::*;
use super::report::escape;
use super::suggest::did_you_mean;

/// The most processes a space may have once `replicas:` are expanded.
pub const MAX_EXPANDED: u64 = 10_000;

/// Expand every `replicas: N` (N ≥ 2) into `NAME-1` … `NAME-N`, each a full
/// copy with `replica: Some(Replica { of, index, count })`; `replicas: 1`
/// keeps the plain name (and `replica` says `1 of 1`, so `${REPLICA}` is
/// `1`). A `depends_on` naming a replicated base then means all its copies.
/// Runs before the dependency checks, so those see the expanded names.
pub(crate) fn expand_replicas(b: &mut Builder<'_>, procs: &mut Vec<ProcessConfig>) {
    if b.extras.iter().all(|e| e.replicas.is_none()) {
        return;
    }
    // A bound on what a (possibly untrusted) config can make mew allocate:
    // 1,000 processes of `replicas: 1000` would be a million configs.
    let total: u64 = b
        .extras
        .iter()
        .map(|e| e.replicas.as_ref().map_or(1, |(n, _)| u64::from(*n)))
        .sum();
    if total > MAX_EXPANDED {
        if let Some((_, loc)) = b.extras.iter().find_map(|e| e.replicas.clone()) {
            b.err(
                &loc,
                format!("`replicas:` would make {total} processes in all; at most {MAX_EXPANDED} are allowed"),
            );
        }
        return;
    }
    let old_extras = std::mem::take(&mut b.extras);
    let mut out = Vec::with_capacity(procs.len());
    let mut extras = Vec::with_capacity(procs.len());
    // Base name → the names of its copies.
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (mut p, e) in procs.drain(..).zip(old_extras) {
        match e.replicas.clone() {
            Some((count, loc)) if count >= 2 => {
                let mut names = Vec::new();
                for index in 1..=count {
                    let c = make_replica(&p, &p.name, index, count);
                    if b.names.iter().any(|(n, _, _)| *n == c.name) {
                        b.err(
                            &loc,
                            format!(
                                "`{}.replicas`: the copy `{}` would have the name of another process\nhelp: rename that process, or this one",
                                p.name, c.name
                            ),
                        );
                    }
                    names.push(c.name.clone());
                    out.push(c);
                    extras.push(e.clone());
                }
                groups.push((p.name.clone(), names));
            }
            Some((_, _)) => {
                p.replica = Some(Replica {
                    of: p.name.clone(),
                    index: 1,
                    count: 1,
                });
                out.push(p);
                extras.push(e);
            }
            None => {
                out.push(p);
                extras.push(e);
            }
        }
    }
    for (p, e) in out.iter_mut().zip(extras.iter_mut()) {
        if !p
            .depends_on
            .iter()
            .any(|d| groups.iter().any(|g| g.0 == d.name))
        {
            continue;
        }
        let mut deps = Vec::new();
        let mut locs = Vec::new();
        for (i, d) in p.depends_on.iter().enumerate() {
            let loc = e.dep_locs.get(i).cloned().unwrap_or_else(|| p.loc.clone());
            match groups.iter().find(|g| g.0 == d.name) {
                // A copy depending on its own base: keep it visible as a self-dependency.
                Some(_) if p.replica.as_ref().is_some_and(|r| r.of == d.name) => {
                    deps.push(Dependency {
                        name: p.name.clone(),
                        condition: d.condition,
                    });
                    locs.push(loc);
                }
                Some((_, names)) => {
                    for n in names {
                        deps.push(Dependency {
                            name: n.clone(),
                            condition: d.condition,
                        });
                        locs.push(loc.clone());
                    }
                }
                None => {
                    deps.push(d.clone());
                    locs.push(loc);
                }
            }
        }
        p.depends_on = deps;
        e.dep_locs = locs;
    }
    *procs = out;
    b.extras = extras;
}

/// Copy `index` of `count` of `template`, named `base-index`.
fn make_replica(template: &ProcessConfig, base: &str, index: u32, count: u32) -> ProcessConfig {
    let mut c = template.clone();
    c.name = format!("{base}-{index}");
    c.replica = Some(Replica {
        of: base.to_owned(),
        index,
        count,
    });
    c
}

/// The config of copy `index` (1-based) of `count` of process `base`, as
/// `mew space scale base=count` starts it: named `base-index`, with
/// `replica` set (so `${REPLICA}` and the `PORT` offset apply at resolve).
/// `base` is either a replicated process's base name (`worker`, whose
/// copies are `worker-1` …) or a plain process's name. `None` when no
/// process is `base` or a copy of it, or `index` is 0 or above `count`.
pub fn replica_of(cfg: &SpaceConfig, base: &str, index: u32, count: u32) -> Option<ProcessConfig> {
    if index == 0 || index > count {
        return None;
    }
    let template = cfg
        .processes
        .iter()
        .find(|p| p.replica.as_ref().is_some_and(|r| r.of == base))
        .or_else(|| cfg.process(base))?;
    if template.kind != ProcKind::Process {
        return None;
    }
    Some(make_replica(template, base, index, count))
}

/// Why [`select`] cannot answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectError {
    /// No process (nor replicated base) has this name.
    UnknownProcess {
        name: String,
        suggestion: Option<String>,
    },
    /// No process lists this profile.
    UnknownProfile {
        name: String,
        suggestion: Option<String>,
        known: Vec<String>,
    },
}

impl std::error::Error for SelectError {}

impl std::fmt::Display for SelectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SelectError::UnknownProcess { name, suggestion } => {
                write!(f, "no process `{}` in this space", escape(name))?;
                if let Some(s) = suggestion {
                    write!(f, "\nhelp: did you mean `{s}`?")?;
                }
                Ok(())
            }
            SelectError::UnknownProfile {
                name,
                suggestion,
                known,
            } => {
                write!(f, "no process has the profile `{}`", escape(name))?;
                if let Some(s) = suggestion {
                    write!(f, "\nhelp: did you mean `{s}`?")
                } else if known.is_empty() {
                    write!(f, "\nhelp: no process of this space has `profiles:`")
                } else {
                    write!(f, "\nhelp: profiles of this space: {}", known.join(", "))
                }
            }
        }
    }
}

/// Every profile named by a process, in config order, once each.
pub fn profiles(cfg: &SpaceConfig) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in &cfg.processes {
        for name in &p.profiles {
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
    }
    out
}

/// Which processes `mew space up [NAME…] [--profile P…]` starts: their
/// names, in start order ([`super::start_order`]).
///
/// - With `names`: those processes and everything they depend on
///   (transitively, through `depends_on`), whatever their profiles; a
///   replicated base name (`worker`) stands for all its copies.
/// - Without: every process without `profiles:`, plus those with one of
///   `profiles`, plus (transitively) what these depend on, even when that
///   has an inactive profile (docker compose would refuse; mew starts it,
///   since nothing could run without it).
///
/// `disabled` and `auto_start` are not looked at: the runtime applies them
/// to what is selected as it does to a whole space (a process named
/// explicitly is the user asking for it).
pub fn select(
    cfg: &SpaceConfig,
    names: &[String],
    profiles_asked: &[String],
) -> Result<Vec<String>, SelectError> {
    let known = profiles(cfg);
    for prof in profiles_asked {
        if !known.contains(prof) {
            let cands: Vec<&str> = known.iter().map(String::as_str).collect();
            return Err(SelectError::UnknownProfile {
                name: prof.clone(),
                suggestion: did_you_mean(prof, &cands).map(str::to_owned),
                known,
            });
        }
    }
    let n = cfg.processes.len();
    let mut wanted = vec![false; n];
    if names.is_empty() {
        for (i, p) in cfg.processes.iter().enumerate() {
            wanted[i] =
                p.profiles.is_empty() || p.profiles.iter().any(|x| profiles_asked.contains(x));
        }
    } else {
        for name in names {
            let mut found = false;
            for (i, p) in cfg.processes.iter().enumerate() {
                if p.name == *name
                    || p.replica
                        .as_ref()
                        .is_some_and(|r| r.of == *name && r.count > 1)
                {
                    wanted[i] = true;
                    found = true;
                }
            }
            if !found {
                let mut cands: Vec<&str> = cfg.processes.iter().map(|p| p.name.as_str()).collect();
                for p in &cfg.processes {
                    if let Some(r) = &p.replica
                        && !cands.contains(&r.of.as_str())
                    {
                        cands.push(r.of.as_str());
                    }
                }
                return Err(SelectError::UnknownProcess {
                    name: name.clone(),
                    suggestion: did_you_mean(name, &cands).map(str::to_owned),
                });
            }
        }
    }
    // Close over depends_on.
    let mut stack: Vec<usize> = (0..n).filter(|&i| wanted[i]).collect();
    while let Some(i) = stack.pop() {
        for d in &cfg.processes[i].depends_on {
            if let Some(j) = cfg.processes.iter().position(|q| q.name == d.name)
                && !wanted[j]
            {
                wanted[j] = true;
                stack.push(j);
            }
        }
    }
    Ok(super::start_order(cfg)
        .into_iter()
        .filter(|&i| wanted[i])
        .map(|i| cfg.processes[i].name.clone())
        .collect())
}

/// What `mew space reload` would do, by process name (each list in the new
/// config's order, `removed` in the old one's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConfigDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<Changed>,
    pub unchanged: Vec<String>,
}

/// A process in both configs that differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Changed {
    pub name: String,
    /// What differs, for the report: `command`, `args`, `env.PORT`,
    /// `env_file.KEY` (a name, never a value), `cwd`, `ready`, `watch` …
    pub fields: Vec<String>,
    /// Whether the running process must be restarted for the new config to
    /// take effect. `false` when only `watch`, `profiles`, `scrollback` or
    /// `depends_on` changed: none changes what runs (the runtime applies them
    /// to the running process, or at its next start).
    pub restart: bool,
}

/// Fields whose change does not need a restart of the running process.
const LIVE_FIELDS: &[&str] = &["watch", "profiles", "scrollback", "depends_on"];

/// The last value of each key of an ordered environment (as exec sees it).
fn env_map(env: &[(String, String)]) -> std::collections::BTreeMap<&str, &str> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn env_changes(
    prefix: &str,
    old: &[(String, String)],
    new: &[(String, String)],
    out: &mut Vec<String>,
) {
    let (o, n) = (env_map(old), env_map(new));
    let mut keys: Vec<&str> = o.keys().chain(n.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    for k in keys {
        if o.get(k) != n.get(k) {
            out.push(format!("{prefix}.{k}"));
        }
    }
}

/// What differs between two configs of one process (empty: nothing). The
/// location in the file, `native` and `upstream_log` are not compared.
pub fn changed_fields(old: &ProcessConfig, new: &ProcessConfig) -> Vec<String> {
    let mut out = Vec::new();
    let mut cmp = |name: &str, differs: bool| {
        if differs {
            out.push(name.to_owned());
        }
    };
    cmp("kind", old.kind != new.kind);
    cmp("command", old.command != new.command);
    cmp("args", old.args != new.args);
    cmp("cwd", old.cwd != new.cwd);
    cmp("env_file", old.env_file != new.env_file);
    cmp("depends_on", old.depends_on != new.depends_on);
    cmp("ready", old.ready != new.ready);
    cmp("health", old.health != new.health);
    cmp("restart_policy", old.restart_policy != new.restart_policy);
    cmp("max_restarts", old.max_restarts != new.max_restarts);
    cmp("backoff", old.backoff != new.backoff);
    cmp("stop_signal", old.stop_signal != new.stop_signal);
    cmp("stop_timeout", old.stop_timeout != new.stop_timeout);
    cmp("max_memory", old.max_memory != new.max_memory);
    cmp("disabled", old.disabled != new.disabled);
    cmp("auto_start", old.auto_start != new.auto_start);
    cmp("one_shot", old.one_shot != new.one_shot);
    cmp("tokens", old.tokens != new.tokens);
    cmp("replica", old.replica != new.replica);
    cmp("watch", old.watch != new.watch);
    cmp("profiles", old.profiles != new.profiles);
    cmp("scrollback", old.scrollback != new.scrollback);
    env_changes("env", &old.env, &new.env, &mut out);
    env_changes("env_file", &old.env_file_vars, &new.env_file_vars, &mut out);
    out
}

/// Compare two configs by process name (see [`ConfigDiff`]). A change of
/// the space itself that every process sees (its id or directory, in
/// `MEW_SPACE` / `MEW_SPACE_DIR`, or the gateway port, in `${PORT}`) marks
/// every process present in both as changed (`space.id`, `space.dir`,
/// `gateway_port`).
pub fn diff(old: &SpaceConfig, new: &SpaceConfig) -> ConfigDiff {
    let mut d = ConfigDiff::default();
    let mut space = Vec::new();
    if old.id != new.id {
        space.push("space.id".to_owned());
    }
    if old.dir != new.dir {
        space.push("space.dir".to_owned());
    }
    if old.gateway_port != new.gateway_port {
        space.push("gateway_port".to_owned());
    }
    for p in &new.processes {
        match old.process(&p.name) {
            None => d.added.push(p.name.clone()),
            Some(o) => {
                let mut fields = changed_fields(o, p);
                fields.extend(space.iter().cloned());
                if fields.is_empty() {
                    d.unchanged.push(p.name.clone());
                } else {
                    let restart = fields.iter().any(|f| !LIVE_FIELDS.contains(&f.as_str()));
                    d.changed.push(Changed {
                        name: p.name.clone(),
                        fields,
                        restart,
                    });
                }
            }
        }
    }
    for o in &old.processes {
        if new.process(&o.name).is_none() {
            d.removed.push(o.name.clone());
        }
    }
    d
}
